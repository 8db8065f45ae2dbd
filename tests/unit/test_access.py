"""Who may do what on a shared twinlens (lib/app/access.py) and the launcher (lib/app/serve.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from bad_input_cases import GUEST_MODEL_CASES, GUEST_PATH_CASES, GUEST_REFUSED, build_guest_disk

from lib.app import access, serve
from lib.app.access import AccessError, Policy
from lib.core.errors import ModelLoadError

SECRET = "s3cret-token"
SHARED_ENV = {access.TOKEN_ENV: SECRET}


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True),
     ("0.0.0.0", False), ("::", False), ("", False), (None, False), ("192.168.1.20", False),
     ("myhost.local", False), ("unix:///tmp/s.sock", False)],
)
def test_loopback_is_decided_by_the_servers_address(address, loopback):
    assert access.is_loopback(address) is loopback
    assert access.listens_beyond_loopback(address, {}) is (not loopback)


def test_twinlens_shared_forces_guests_on_a_loopback_address():
    assert access.listens_beyond_loopback("127.0.0.1", {access.SHARED_ENV: "1"})
    assert not access.listens_beyond_loopback("127.0.0.1", {access.SHARED_ENV: "0"})


def test_on_loopback_every_browser_is_the_operator_and_no_secret_counts():
    policy = Policy.make("localhost", {access.TOKEN_ENV: SECRET, access.EXPERT_ENV: "1"})
    assert not policy.shared and policy.token == "" and not policy.remote_expert
    who = policy.access(None, "tab")
    assert who.operator and who.expert and not who.shared
    assert not policy.is_operator_proof(SECRET)


@pytest.mark.parametrize(("proof", "operator"), [
    (SECRET, True), (None, False), ("", False), ("wrong", False), (SECRET + "x", False), (True, False),
    (SECRET[:-1], False), (1, False),
])
def test_shared_server_operator_only_with_this_starts_secret(proof, operator):
    policy = Policy.make("0.0.0.0", SHARED_ENV)
    who = policy.access(proof, "tab")
    assert who.operator is operator and who.expert is operator and who.shared
    assert who.role == ("operator" if operator else "guest")


def test_shared_server_without_a_secret_has_no_operator_link_that_works():
    policy = Policy.make("0.0.0.0", {})
    assert not policy.access("", "tab").operator and not policy.access(None, "tab").operator


def test_allow_remote_expert_gives_guests_the_options_but_not_the_operators_history_rights():
    policy = Policy.make("0.0.0.0", {**SHARED_ENV, access.EXPERT_ENV: "1"})
    guest = policy.access(None, "tab")
    assert policy.remote_expert and guest.expert and not guest.operator
    guest.check_options(True, True)
    guest.check_model("/etc")
    assert not guest.may_manage("another tab")


def test_guest_may_not_turn_on_code_or_pickle():
    guest = Policy.make("0.0.0.0", SHARED_ENV).access(None, "tab")
    guest.check_options(False, False)
    for flags in ((True, False), (False, True), (True, True)):
        with pytest.raises(AccessError, match="operator"):
            guest.check_options(*flags)


@pytest.fixture
def disk(tmp_path):
    """listed/ (with a model folder and a symlink out of it), outside/ (a model folder), a file."""
    build_guest_disk(tmp_path)
    return tmp_path


def _guest(disk: Path, hub: bool = False) -> access.Access:
    env = {**SHARED_ENV, access.MODELS_ENV: f"listed{os.pathsep}{disk / 'nowhere'}"}
    if hub:
        env[access.HUB_ENV] = "1"
    return Policy.make("0.0.0.0", env, cwd=disk).access(None, "tab")


@pytest.mark.parametrize("hub", [False, True], ids=["no-hub", "guest-hub"])
@pytest.mark.parametrize("case", GUEST_MODEL_CASES, ids=lambda c: c.name)
def test_guest_models_default_and_listed_folders_only_one_message_else(disk, case, hub):
    guest = _guest(disk, hub)
    spec = case.spec.format(listed=disk / "listed", outside=disk / "outside")
    if not case.refused or (hub and case.hub_allows):
        guest.check_model(spec, cwd=disk)
        return
    with pytest.raises(AccessError) as refused:
        guest.check_model(spec, cwd=disk)
    message = str(refused.value)
    assert message == access.model_refused(spec, guest.folders, hub) and GUEST_REFUSED in message
    assert "exist" not in message and "file" not in message and "private" not in message
    assert ("hub id" in message) is hub


@pytest.mark.parametrize("hub", [False, True], ids=["no-hub", "guest-hub"])
@pytest.mark.parametrize("case", GUEST_PATH_CASES, ids=lambda c: c.name)
def test_guest_analysis_paths_listed_folders_only_one_message_else(disk, case, hub):
    """SAE folders, params.npz, hf: specs (and the kinds later pages declare) through the one gate:
    allowed ones come back resolved (symlinks followed), the rest get refused()'s words."""
    guest = _guest(disk, hub)
    spec = case.spec.format(listed=disk / "listed", outside=disk / "outside")
    if not case.refused or (hub and case.hub_allows):
        given = guest.check_input(spec, case.kind, cwd=disk)
        if spec.startswith(access.HUB_PREFIX):
            assert given == spec
        else:
            assert Path(given) == (disk / spec).resolve() and access.inside(Path(given), guest.folders)
        return
    with pytest.raises(AccessError) as refused:
        guest.check_input(spec, case.kind, cwd=disk)
    assert str(refused.value) == access.refused(spec.strip(), case.kind, guest.folders, hub)
    assert GUEST_REFUSED in str(refused.value) and "private" not in str(refused.value)


@pytest.mark.parametrize("kind", sorted(access.KINDS))
def test_one_message_per_kind_for_a_folder_a_file_and_nothing(disk, kind):
    """What is on the disk never changes the words: only the typed text differs."""
    guest = _guest(disk)
    messages = set()
    for name in ("secret-sae", "notes.txt", "params.npz", "no-such-thing"):
        spec = f"{disk}/outside/{name}"
        with pytest.raises(AccessError) as refused:
            guest.check_input(spec, kind, cwd=disk)
        messages.add(str(refused.value).replace(spec, "SPEC"))
    assert len(messages) == 1, messages


def test_the_operator_and_remote_experts_get_their_text_back_unchecked(disk):
    listed = {**SHARED_ENV, access.MODELS_ENV: "listed"}
    operator = Policy.make("0.0.0.0", listed, cwd=disk).access(SECRET, "op")
    expert = Policy.make("0.0.0.0", {**SHARED_ENV, access.EXPERT_ENV: "1"}, cwd=disk).access(None, "tab")
    local = Policy.make("localhost", {}).access(None, "tab")
    for who in (operator, expert, local):
        for kind in access.KINDS:
            for spec in ("/etc/passwd", f"{disk}/outside/secret-sae", "hf:o/r/f", "  ~/x  "):
                assert who.check_input(spec, kind, cwd=disk) == spec.strip()


def test_an_unknown_kind_is_a_bug_not_a_refusal(disk):
    with pytest.raises(ValueError, match="KINDS"):
        _guest(disk).check_input("/etc", "no-such-kind")


def test_every_declared_path_input_names_a_known_kind_once():
    keys = [entry.key for entry in access.PATH_INPUTS]
    assert len(keys) == len(set(keys))
    assert all(entry.kind in access.KINDS for entry in access.PATH_INPUTS)
    assert {"features-sae", "model", "model2"} <= set(keys)


@pytest.mark.parametrize("spec", ["listed/model", "listed", "listed/new", "outside/../listed/model"])
def test_guest_may_name_listed_folders_relative_to_the_working_folder(disk, spec):
    _guest(disk).check_model(spec, cwd=disk)


@pytest.mark.parametrize("spec", ["outside", "outside/secret-model", "listed/../outside"])
def test_guest_is_refused_relative_paths_outside_the_listed_folders(disk, spec):
    with pytest.raises(AccessError, match=GUEST_REFUSED):
        _guest(disk).check_model(spec, cwd=disk)


def test_refusal_reads_the_same_for_a_folder_that_exists_and_one_that_does_not(disk):
    guest = _guest(disk)
    messages = []
    for name in ("secret-model", "no-such-model", "notes.txt"):
        spec = f"{disk}/outside/{name}"
        with pytest.raises(AccessError) as refused:
            guest.check_model(spec, cwd=disk)
        messages.append(str(refused.value).replace(spec, "SPEC"))
    assert len(set(messages)) == 1


def test_a_hub_shaped_name_that_is_a_folder_here_is_refused_and_one_that_is_not_goes_to_the_hub(disk):
    """With --guest-hub: 'outside/secret-model' exists here: refused. 'outside/no-such-model' does
    not: it is a hub id, and when the hub has no such model the guest reads the refusal's message
    (explain_failure). Without --guest-hub both are refused alike: no fetch for a guest."""
    guest = _guest(disk, hub=True)
    with pytest.raises(AccessError):
        guest.check_model("outside/secret-model", cwd=disk)
    guest.check_model("outside/no-such-model", cwd=disk)
    messages = []
    for spec in ("outside/secret-model", "outside/no-such-model"):
        with pytest.raises(AccessError) as refused:
            _guest(disk).check_model(spec, cwd=disk)
        messages.append(str(refused.value).replace(spec, "SPEC"))
    assert messages[0] == messages[1]


def test_a_hub_id_not_found_reads_like_a_refused_path_for_a_guest(disk):
    guest = _guest(disk, hub=True)
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        raise ModelLoadError("Could not find 'org/x' on this machine, and the hub cannot be reached.") \
            from OfflineModeIsEnabled("offline")
    except ModelLoadError as exc:
        failure = exc
    explained = guest.explain_failure("org/x", failure)
    assert isinstance(explained, AccessError)
    assert str(explained) == access.model_refused("org/x", guest.folders, hub=True)
    operator = Policy.make("0.0.0.0", SHARED_ENV).access(SECRET, "op")
    assert operator.explain_failure("org/x", failure) is failure
    other = ModelLoadError("'org/x' is a 'bert' model, not a causal (next-token) language model.")
    assert guest.explain_failure("org/x", other) is other


def test_history_rights_operator_and_own_saves_only():
    policy = Policy.make("0.0.0.0", SHARED_ENV)
    guest, operator = policy.access(None, "tab-1"), policy.access(SECRET, "tab-op")
    assert guest.may_manage("tab-1") and not guest.may_manage("tab-2") and not guest.may_manage("")
    assert operator.may_manage("tab-1") and operator.may_manage("")
    assert not policy.access(None, "").may_manage("")  # an empty id owns nothing


def test_a_guest_only_unloads_models_a_guest_loaded():
    held = [("op-model", True), ("guest-model", False)]
    assert access.eviction(held[:1], 2, by_operator=False) is None  # room left
    assert access.eviction(held, 2, by_operator=False) == "guest-model"
    assert access.eviction(held, 2, by_operator=True) == "op-model"  # least recently used
    with pytest.raises(AccessError, match="loaded by the operator"):
        access.eviction([("a", True), ("b", True)], 2, by_operator=False)


def test_operator_links_carry_the_secret_and_reach_this_machine_first():
    assert access.operator_links("0.0.0.0", 8501, "t0k", ["laptop", "192.168.1.5"]) == [
        "http://127.0.0.1:8501/?token=t0k", "http://laptop:8501/?token=t0k", "http://192.168.1.5:8501/?token=t0k",
    ]
    assert access.operator_links("192.168.1.5", 80, "t", ["laptop"]) == ["http://192.168.1.5:80/?token=t"]
    assert access.operator_links("::", 1, "t") == ["http://127.0.0.1:1/?token=t"]
    assert access.operator_links("fe80::1", 1, "t") == ["http://[fe80::1]:1/?token=t"]


def test_tokens_are_random_and_long():
    tokens = {access.new_token() for _ in range(50)}
    assert len(tokens) == 50 and min(len(t) for t in tokens) >= 40


def test_a_server_started_without_a_secret_makes_one_up_once():
    first, made = access.process_token({})
    again, made_again = access.process_token({})
    assert first == again and not made_again and len(first) >= 40
    assert access.process_token({access.TOKEN_ENV: "given"}) == ("given", False)
    assert made or first  # made on the first call in this process (another test may have made it)


def test_launcher_on_loopback_runs_streamlit_without_a_secret():
    env, command, lines = serve.prepare("localhost", 8600, None, {access.TOKEN_ENV: "stale"})
    assert access.TOKEN_ENV not in env
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert command[command.index("--server.address") + 1] == "localhost"
    assert "this machine only" in lines[0]


def test_launcher_beyond_loopback_makes_a_secret_and_prints_the_operator_link(tmp_path):
    env, command, lines = serve.prepare("0.0.0.0", 8600, f"{tmp_path}{os.pathsep}rel", {}, ["laptop"])
    token = env[access.TOKEN_ENV]
    assert len(token) >= 40 and env[access.MODELS_ENV] == f"{tmp_path}{os.pathsep}rel"
    text = "\n".join(lines)
    assert f"http://127.0.0.1:8600/?token={token}" in text and f"http://laptop:8600/?token={token}" in text
    assert str(tmp_path) in text and "guest" in text
    assert command[command.index("--server.headless") + 1] == "true"
    env2, _, _ = serve.prepare("0.0.0.0", 8600, None, {})
    assert env2[access.TOKEN_ENV] != token  # a new secret at each start


def test_launcher_passes_guest_hub_on_only_when_asked():
    env, _, lines = serve.prepare("0.0.0.0", 1, None, {access.HUB_ENV: ""}, guest_hub=True)
    assert env[access.HUB_ENV] == "1" and Policy.make("0.0.0.0", env).guest_hub
    assert any("guests may make this server fetch from the hub" in line for line in lines)
    env, _, lines = serve.prepare("0.0.0.0", 1, None, {})
    assert access.HUB_ENV not in env and not Policy.make("0.0.0.0", env).guest_hub
    assert any("no hub fetches for guests" in line for line in lines)
    assert serve.parse(["--guest-hub"]).guest_hub and not serve.parse([]).guest_hub
    assert not Policy.make("localhost", {access.HUB_ENV: "1"}).guest_hub  # no guests on loopback


def test_launcher_warns_when_remote_expert_is_allowed():
    _, _, lines = serve.prepare("0.0.0.0", 1, None, {access.EXPERT_ENV: "1"})
    assert any("ALLOW_REMOTE_EXPERT" in line for line in lines)
    _, _, lines = serve.prepare("127.0.0.1", 1, None, {access.SHARED_ENV: "1"})
    assert any("?token=" in line for line in lines)


def test_listed_folders_are_resolved_and_bad_entries_skipped(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    value = os.pathsep.join(["real", "", " link ", "~no-such-user-xyz/m", str(tmp_path / "real")])
    assert access.listed_folders(value, cwd=tmp_path) == ((tmp_path / "real").resolve(),)
