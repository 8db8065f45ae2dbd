"""The embedded model's own unpacked folder given as a model (issue 24) is recognised as the default
model by its weights (manifest and SHA-256), not by its name, so the shipped SAEs fit it; a folder
whose manifest claims the embedded file but whose weights differ is not."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lib.analyses.common.sae import shipped_saes
from lib.app.cli import main
from lib.core.models import DEFAULT_NAME, ensure_default_model, is_default_folder, load_model


def test_the_unpacked_folder_and_a_copy_of_it_are_the_default_model(tmp_path):
    unpacked = ensure_default_model()
    assert is_default_folder(unpacked)
    copy = tmp_path / "my-smollm2"
    copy.mkdir()
    for file in unpacked.iterdir():  # links: the same bytes under another folder's name
        (copy / file.name).symlink_to(file)
    assert is_default_folder(copy)
    loaded = load_model(str(copy))
    assert loaded.name == DEFAULT_NAME
    assert sorted(shipped_saes(loaded)) == [6, 15, 24]


def test_a_folder_that_only_claims_to_be_the_default_is_not(tmp_path, tiny_folders):
    fake = tmp_path / "fake"
    shutil.copytree(tiny_folders["llama"], fake)
    manifest = json.loads((ensure_default_model() / "twinlens-manifest.json").read_text())
    sizes = {p.name: p.stat().st_size for p in fake.iterdir() if p.is_file()}
    (fake / "twinlens-manifest.json").write_text(json.dumps({"source": manifest["source"], "sizes": sizes}))
    assert not is_default_folder(fake)  # right manifest, other weights
    assert load_model(str(fake)).name == str(fake)


def test_the_cli_reads_the_shipped_sae_with_the_unpacked_folder_as_model(capsys):
    code = main(["features", "The capital of France is", "The capital of Italy is", "--layer", "15",
                 "--top", "3", "--model", str(ensure_default_model())])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "--any-model" not in out.err
    assert json.loads(out.out)


def test_a_damaged_copy_is_not_the_default(tmp_path):
    unpacked, name = ensure_default_model(), "config.json"
    copy = tmp_path / "damaged"
    copy.mkdir()
    for file in unpacked.iterdir():
        if file.name != name:
            (copy / file.name).symlink_to(file)
    (copy / name).write_text("{}")  # another size than the manifest records
    assert not is_default_folder(copy)


BUILD_ONCE = """
import sys
import lib.core.models as models
build = models._build_default_model
def counted(target):
    with open(sys.argv[1], "a") as marks:
        marks.write("built\\n")
    build(target)
models._build_default_model = counted
print(models.ensure_default_model())
"""


def test_two_processes_on_a_new_machine_unpack_the_model_once(tmp_path):
    """Two servers (or test workers) starting at once with an empty cache: one builds, the other
    waits on the lock and reads the finished folder; both get the same complete copy."""
    marks = tmp_path / "marks"
    env = {**os.environ, "TWINLENS_CACHE": str(tmp_path / "cache")}
    root = Path(__file__).resolve().parents[2]
    runs = [subprocess.Popen([sys.executable, "-c", BUILD_ONCE, str(marks)], cwd=root, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert marks.read_text().splitlines() == ["built"]
    folders = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert folders == {str(tmp_path / "cache" / Path(next(iter(folders))).name)}
    assert is_default_folder(Path(next(iter(folders))))


def test_while_unpacking_the_gguf_file_is_parsed_once_and_gguf_is_left_as_it_was():
    """`_gguf_read_once`: one reader per file and one tensor-name map per (arch, layers) inside it;
    gguf's own classes back outside. (That the unpacked weights are unchanged by it is what the
    shipped lens cards and SAE cards check: their figures are recomputed from the unpacked model.)"""
    import gguf

    from lib.core.models import _gguf_path, _gguf_read_once

    path = _gguf_path()
    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with _gguf_read_once():
        first = gguf.GGUFReader(path)
        assert gguf.GGUFReader(str(path)) is first and isinstance(first, reader)
        arch = next(iter(gguf.MODEL_ARCH_NAMES))
        assert gguf.get_tensor_name_map(arch, 30) is gguf.get_tensor_name_map(arch, 30)
    assert gguf.GGUFReader is reader and gguf.get_tensor_name_map is name_map
