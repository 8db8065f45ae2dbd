"""NDIF through the nnsight backend: every way a remote run can fail gives one plain message.

No network reaches NDIF from the test machines, so each failure is simulated where nnsight
meets the network (its RemoteBackend, NDIF's /status) and the message twinlens shows is checked:
no key, a refused key, no network, a model NDIF does not host, a timeout, an error in the job.
The API key never appears in a message. The CLI prints the same JSON with either backend.
"""

from __future__ import annotations

import json

import httpx
import pytest
import torch
from json_close import json_close
from nnsight.intervention.backends.remote import RemoteBackend
from nnsight.intervention.backends.remote import RemoteError as NnsightRemoteError

from lib.app import cli
from lib.core import nnsight_backend
from lib.core.capture import capture
from lib.core.errors import RemoteError, SettingsError
from lib.core.models import load_model, parse_max_memory
from lib.core.nnsight_backend import NnsightBackend

KEY = "sk-test-key-4f9a1c"
HOSTED = {"deployments": {"x": {"repo_id": "meta-llama/Llama-3.1-70B", "application_state": "RUNNING"}}}


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("NDIF_API_KEY", KEY)


def test_no_api_key_is_refused_before_anything_is_sent(monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(nnsight_backend, "ndif_deployments", lambda: pytest.fail("must not reach NDIF"))
    with pytest.raises(RemoteError, match="No NDIF API key: set the environment variable NDIF_API_KEY"):
        load_model("meta-llama/Llama-3.1-70B", backend="nnsight", remote=True)


def test_no_network_says_ndif_cannot_be_reached(monkeypatch, key):
    def down():
        raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(nnsight_backend, "ndif_deployments", down)
    with pytest.raises(RemoteError, match="Cannot reach NDIF") as refused:
        load_model("meta-llama/Llama-3.1-70B", backend="nnsight", remote=True)
    assert KEY not in str(refused.value)


def test_a_model_ndif_does_not_host_is_named_with_what_it_hosts(monkeypatch, key):
    monkeypatch.setattr(nnsight_backend, "ndif_deployments", lambda: HOSTED)
    with pytest.raises(RemoteError, match="NDIF does not host 'gpt2'.*It runs: meta-llama/Llama-3.1-70B"):
        load_model("gpt2", backend="nnsight", remote=True)


def test_a_hosted_model_whose_config_cannot_be_read_offline_says_so(monkeypatch, key):
    monkeypatch.setattr(nnsight_backend, "ndif_deployments", lambda: HOSTED)
    with pytest.raises(RemoteError, match="Could not read the config .* hub cannot be reached"):
        load_model("meta-llama/Llama-3.1-70B", backend="nnsight", remote=True)


def test_a_local_folder_is_not_sent_to_ndif(tiny_folders, key):
    with pytest.raises(RemoteError, match="is on this machine, so run it with remote off"):
        load_model(str(tiny_folders["llama"]), backend="nnsight", remote=True)


def test_remote_needs_the_nnsight_backend_and_max_memory_a_device_map(tiny_folders):
    with pytest.raises(SettingsError, match="needs the nnsight backend"):
        load_model(str(tiny_folders["llama"]), remote=True)
    with pytest.raises(SettingsError, match="Unknown backend 'ndif'"):
        load_model(str(tiny_folders["llama"]), backend="ndif")
    with pytest.raises(SettingsError, match="add --device-map auto"):
        load_model(str(tiny_folders["llama"]), max_memory={"cpu": "1GB"})


@pytest.fixture
def remote_llama(tiny_models, monkeypatch):
    """The tiny Llama with a backend that sends every trace to NDIF (simulated below), under the
    hub id NDIF would know it by."""
    from nnsight.modeling.transformers import TransformersModel

    monkeypatch.setattr(TransformersModel, "to_model_key", lambda self: "meta-llama/Llama-3.1-70B")
    local = tiny_models["llama"]
    from lib.core.loaded import LoadedModel

    loaded = LoadedModel(
        model=local.model, tokenizer=local.tokenizer, spec=local.spec, name=local.name,
        architecture=local.architecture, device=local.device, dtype=local.dtype, lock=local.lock,
    )
    loaded.backend = NnsightBackend(loaded, remote=True)
    return loaded


@pytest.mark.parametrize(
    ("raised", "message"),
    [
        (NnsightRemoteError(f"Failed to send request: Invalid API key {KEY}"), "NDIF refused the API key"),
        (NnsightRemoteError("Failed to send request: 401 Unauthorized"), "NDIF refused the API key"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "Cannot reach NDIF"),
        (httpx.ReadTimeout("The read operation timed out"), "timed out before its result came back"),
        (NnsightRemoteError("Model key 'x' is not deployed"), "NDIF does not host this model"),
        (NnsightRemoteError("RuntimeError: CUDA out of memory on worker 3"),
         "failed on the server: RuntimeError: CUDA out of memory on worker 3"),
    ],
    ids=["refused-key", "unauthorized", "no-network", "timeout", "unhosted", "job-error"],
)
def test_each_remote_failure_gives_one_plain_message(
    remote_llama, tiny_models, monkeypatch, key, raised, message
):
    def fail(self, tracer=None):
        assert self.api_key == KEY  # the key set in the environment is the one sent
        raise raised

    monkeypatch.setattr(RemoteBackend, "__call__", fail)
    ids = torch.tensor([capture(tiny_models["llama"], "Mary gave milk").token_ids])
    with pytest.raises(RemoteError, match=message) as failed:
        remote_llama.backend.run(ids)
    assert KEY not in str(failed.value) and "\n" not in str(failed.value)
    # the session goes on: the lock is free and the model runs locally as before
    assert remote_llama.lock.acquire(blocking=False)
    remote_llama.lock.release()
    assert tiny_models["llama"].backend.run(ids).logits.shape == (1, remote_llama.vocab_size)


def test_a_remote_run_without_a_key_is_refused_before_tracing(remote_llama, monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(RemoteBackend, "__call__", lambda *a, **k: pytest.fail("must not be sent"))
    with pytest.raises(RemoteError, match="No NDIF API key"):
        remote_llama.backend.run(torch.tensor([[1, 2, 3]]))


def test_the_remote_path_sends_the_trace_with_the_key_and_returns_what_it_saved(
    remote_llama, tiny_models, monkeypatch, key
):
    """A stand-in for NDIF: the serialized request is run here (nnsight's local simulation),
    so what comes back is only what the trace saved."""
    from nnsight.intervention.backends.local import LocalSimulationBackend

    seen = {}

    def serve(self, tracer=None):
        seen["key"] = self.api_key
        return LocalSimulationBackend(remote_llama.backend.envoy)(tracer)

    monkeypatch.setattr(RemoteBackend, "__call__", serve)
    ids = torch.tensor([capture(tiny_models["llama"], "Mary gave milk").token_ids])
    top = remote_llama.backend.run(ids, reduce=lambda run: int(run.logits.argmax()))
    assert seen["key"] == KEY
    assert top == int(tiny_models["llama"].backend.run(ids).logits.argmax())


# -- the command line ------------------------------------------------------------------------


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("command", ["compare", "patch"])
def test_cli_prints_the_same_json_with_either_backend(tiny_folders, capsys, command):
    folder = str(tiny_folders["gpt2"])
    args = (command, "The capital of France is", "The capital of Italy is", "--model", folder)
    code_local, local, _ = _cli(capsys, *args)
    code_nn, nnsight, err = _cli(capsys, *args, "--backend", "nnsight")
    assert code_local == code_nn == 0, err
    assert json_close(json.loads(nnsight), json.loads(local))



def test_cli_remote_without_a_key_prints_one_line(tiny_folders, capsys, monkeypatch):
    monkeypatch.delenv("TWINLENS_DEBUG", raising=False)
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    code, out, err = _cli(capsys, "compare", "a", "b", "--model", "meta-llama/Llama-3.1-8B", "--remote")
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0 and "No NDIF API key" in err


def test_cli_remote_never_prints_the_key(capsys, monkeypatch, key):
    monkeypatch.delenv("TWINLENS_DEBUG", raising=False)

    def refused():
        raise httpx.HTTPStatusError(
            f"401 Unauthorized for key {KEY}", request=httpx.Request("GET", "https://x"),
            response=httpx.Response(401),
        )

    monkeypatch.setattr(nnsight_backend, "ndif_deployments", refused)
    code, out, err = _cli(capsys, "compare", "a", "b", "--model", "meta-llama/Llama-3.1-8B", "--remote")
    assert code == 1 and "NDIF refused the API key" in err and KEY not in err + out


@pytest.mark.parametrize("command", ["components", "steer", "features", "compare-models"])
def test_cli_remote_refuses_commands_that_would_fetch_residual_streams(capsys, monkeypatch, command):
    monkeypatch.delenv("TWINLENS_DEBUG", raising=False)
    monkeypatch.setenv("NDIF_API_KEY", "not-used")

    def contacted():
        raise AssertionError("NDIF was contacted")

    monkeypatch.setattr(nnsight_backend, "ndif_deployments", contacted)
    args = ["a"] if command == "compare-models" else ["a", "b"]
    extra = {"steer": ["--layer", "1", "--alpha", "1"], "compare-models": ["--model2", "gpt2"]}
    extra = extra.get(command, [])
    code, out, err = _cli(capsys, command, *args, *extra, "--model", "meta-llama/Llama-3.1-8B", "--remote")
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0 and "whole residual stream" in err
    assert "compare, generate, patch run" in err


def test_cli_patch_remote_prints_the_local_grid(tiny_folders, capsys, monkeypatch, key):
    """`patch --remote`: the prompts' captures keep no residual stream and A runs again in the job of
    B's patched runs; the JSON is the local one (the model "on NDIF" is the tiny GPT-2 on nnsight's
    local-remote path)."""
    from lib.core import models

    folder = str(tiny_folders["gpt2"])
    remote_backends = []

    def load_remote(spec: str, **settings):
        model = load_model(folder, backend="nnsight", remote="local")
        remote_backends.append(model.backend)
        return model

    monkeypatch.setattr(models, "_load_remote", load_remote)
    args = ("patch", "The capital of France is", "The capital of Italy is")
    code, remote, err = _cli(capsys, *args, "--model", "meta-llama/Llama-3.1-8B", "--remote")
    assert code == 0, err
    code, local, err = _cli(capsys, *args, "--model", folder)
    assert code == 0, err
    remote_json, local_json = json.loads(remote), json.loads(local)
    remote_json.pop("model"), local_json.pop("model")
    assert json_close(remote_json, local_json)
    cells = sum(len(row) for row in local_json["effect"])
    assert remote_backends[0].received_bytes == 8 * cells  # one float64 per cell came back


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("cpu=2GB", {"cpu": "2GB"}), ("0=20GB, 1=20GB,cpu=64GiB", {0: "20GB", 1: "20GB", "cpu": "64GiB"}),
     ("", None)],
)
def test_max_memory_flag_is_parsed(text, parsed):
    assert parse_max_memory(text) == parsed


@pytest.mark.parametrize("text", ["cpu", "cpu=lots", "=2GB", "cpu=2GB,gpu"])
def test_bad_max_memory_is_refused_plainly(text):
    with pytest.raises(SettingsError, match="is not a memory limit: write device=amount"):
        parse_max_memory(text)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--max-memory", "cpu=lots", "--device-map", "auto"), "is not a memory limit"),
        (("--device-map", "everywhere"), "Unknown device map 'everywhere'"),
        (("--max-memory", "cpu=2GB"), "add --device-map auto"),
    ],
)
def test_cli_bad_placement_flags_print_one_line(tiny_folders, capsys, monkeypatch, flags, message):
    monkeypatch.delenv("TWINLENS_DEBUG", raising=False)
    code, out, err = _cli(capsys, "compare", "a", "b", "--model", str(tiny_folders["gpt2"]), *flags)
    assert code == 1 and out == "" and err.strip().count("\n") == 0 and message in err, err
