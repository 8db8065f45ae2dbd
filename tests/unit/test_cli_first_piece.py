"""`--answer`/`--wrong` words of several tokens (issue 24): a score that uses only their first piece
says so on stderr as well as in the JSON; a whole-word score, or one-token words, stay quiet."""

from __future__ import annotations

import json

from cli_run import run_cli

from lib.core.tokens import typed_word

FRANCE, ITALY = "The capital of France is", "The capital of Italy is"


def test_a_multi_token_answer_scored_by_its_first_piece_is_named_on_stderr(tiny_folders, tiny_models):
    folder, model = str(tiny_folders["llama"]), tiny_models["llama"]
    assert len(typed_word(model.tokenizer, " Lakers").ids) > 1  # several tokens in the tiny tokenizer
    out = run_cli("patch", FRANCE, ITALY, "--answer", " Lakers", "--wrong", " Rome", "--model", folder)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["answer"]["word"] == "␣Lakers"
    lines = out.stderr.strip().splitlines()
    assert lines == [f"note: --answer '␣Lakers' is several tokens; the score uses its first piece "
                     f"'{data['answer']['token']}' (patch --score word scores the whole word)."]


def test_whole_word_scores_and_one_token_words_print_no_note(tiny_folders):
    folder = str(tiny_folders["llama"])
    whole = run_cli("patch", FRANCE, ITALY, "--answer", " Lakers", "--wrong", " Rome", "--score", "word",
                    "--model", folder)
    one = run_cli("patch", FRANCE, ITALY, "--answer", " Paris", "--wrong", " Rome", "--model", folder)
    assert (whole.returncode, one.returncode) == (0, 0)
    assert "note:" not in whole.stderr and "note:" not in one.stderr
