"""The Features page, driven with AppTest on the embedded model: an SAE given by folder, the
shipped SAEs, two models, and SAEs the page must refuse with one message."""

from __future__ import annotations

import pytest
import torch
from app_helpers import compare_two, open_page
from bad_input_cases import GOOD, SAE_CASE_NAMES, sae_cases  # noqa: F401  (fixture)

from lib.analyses.common.sae import load_sae, save_saelens, shipped_saes
from lib.analyses.common.vector import kind_label
from lib.analyses.features import compare_features
from lib.app import session
from lib.core.capture import capture

A, B = "The capital of France is", "The capital of Italy is"


@pytest.fixture(scope="module")
def exact_sae(tmp_path_factory, real_model):
    """An SAE for SmolLM2's residual 15 that reconstructs exactly: f = relu([x; −x]), W_dec = [I; −I]."""
    d = real_model.d_model
    eye = torch.eye(d)
    return save_saelens(
        tmp_path_factory.mktemp("sae") / "exact", W_enc=torch.cat([eye, -eye], 1), b_enc=torch.zeros(2 * d),
        W_dec=torch.cat([eye, -eye], 0), b_dec=torch.zeros(d), architecture="standard",
        hook_name="blocks.15.hook_resid_pre", model_name=real_model.name, dtype="float32",
    )


def open_features(app, **request):
    return open_page(app, "pages/features.py", **request)


def use_sae(app, path) -> None:
    app.text_input(key="features-sae").input(str(path)).run()
    assert not app.exception, app.exception


def table(app, column: str):
    return [df.value for df in app.dataframe if column in df.value.columns]


def test_page_shows_what_the_library_computes_for_a_given_sae(app, exact_sae, real_model):
    open_features(app, a=A, b=B)
    use_sae(app, exact_sae)
    assert not app.error
    expected = compare_features(load_sae(exact_sae), capture(real_model, A), capture(real_model, B), top=10)
    top_a = table(app, "activation A")[0]
    assert top_a["feature"].tolist() == [r.feature for r in expected.top_a]
    assert top_a["activation A"].tolist() == pytest.approx([r.activation_a for r in expected.top_a], abs=1e-5)
    assert any("FVU A: 0.000" in c.value and "residual 15" in c.value for c in app.caption)
    assert len(app.get("vega_lite_chart")) >= 2  # a heatmap per prompt (and the card's charts)
    assert app.selectbox(key="features-card-15").value is not None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root, "not an SAE folder"),
        (lambda root: root / "missing", "no such file or folder"),
    ],
)
def test_page_refuses_a_bad_sae_with_one_message(app, tmp_path, make, message, real_model):
    open_features(app, a=A, b=B)
    use_sae(app, make(tmp_path))
    assert len(app.error) == 1 and message in app.error[0].value
    assert not table(app, "activation A")


@pytest.mark.slow
def test_page_refuses_an_sae_of_another_width(app, tmp_path, real_model):
    save_saelens(tmp_path / "wide", W_enc=torch.zeros(64, 8), b_enc=torch.zeros(8), W_dec=torch.zeros(8, 64),
                 b_dec=torch.zeros(64), architecture="standard", hook_name="blocks.1.hook_resid_pre",
                 model_name="tiny", dtype="float32")
    open_features(app, a=A, b=B)
    use_sae(app, tmp_path / "wide")
    assert len(app.error) == 1 and "width 64" in app.error[0].value and "width 576" in app.error[0].value


def test_page_reads_the_shipped_saes(app, real_model):
    shipped = shipped_saes(real_model)
    assert len(shipped) >= 3, "twinlens ships SAEs at three residuals of the embedded model"
    open_features(app, a=A, b=B)
    assert not app.error
    layer = app.selectbox(key="features-layer")
    assert list(layer.options) == [str(r) for r in shipped]
    rows = table(app, "density")
    assert rows and rows[0]["label"].str.len().gt(0).all()  # every listed feature has a label
    assert any("held-out FVU" in c.value for c in app.caption)


def test_page_in_two_models_mode(app, tmp_path, tiny_folders, partner_folders):
    """Base vs 'fine-tune' (the tiny Llama and its reseeded twin): one SAE made for the first fits
    both only once the user says it may be used on another model."""
    d = 64
    eye = torch.eye(d)
    save_saelens(tmp_path / "exact", W_enc=torch.cat([eye, -eye], 1), b_enc=torch.zeros(2 * d),
                 W_dec=torch.cat([eye, -eye], 0), b_dec=torch.zeros(d), architecture="standard",
                 hook_name="blocks.1.hook_resid_pre", model_name=str(tiny_folders["llama"]), dtype="float32")
    compare_two(app, tiny_folders["llama"], partner_folders["llama-seed1"], prompt=A)
    app.switch_page("pages/features.py").run()
    assert not app.exception, app.exception
    use_sae(app, tmp_path / "exact")
    assert len(app.error) == 1 and "trained on" in app.error[0].value
    app.checkbox(key="features-any-model").check().run()
    assert not app.exception and not app.error
    assert table(app, "activation model 1")
    assert any("FVU model 1: 0.000" in c.value and "FVU model 2: 0.000" in c.value for c in app.caption)


def test_steer_with_this_feature_opens_steering_with_its_decoder_row(app, exact_sae, real_model):
    """The card's button sends the feature's W_dec row to the Steering page at the SAE's layer, with
    α = the feature's highest activation on the prompts; steering there equals the library's run."""
    from lib.analyses.common.decode import GenerationSettings
    from lib.analyses.features import feature_steering_vector, trace_feature
    from lib.analyses.steering import steer_captures

    open_features(app, a=A, b=B)
    use_sae(app, exact_sae)
    feature = int(app.selectbox(key="features-card-15").value.split(" ")[0])
    app.button(key=f"features-steer-15-{feature}").click().run()
    assert not app.exception, app.exception
    app.switch_page("pages/steering.py")  # AppTest's next runs follow the page the app switched to
    assert any(f"SAE feature {feature}" in i.value for i in app.info)
    assert app.selectbox(key="steering-layer").value == 15
    cap_a, cap_b = capture(real_model, A), capture(real_model, B)
    trace = trace_feature(load_sae(exact_sae), cap_a, cap_b, feature)
    alpha = round(max(*trace.activations_a, *trace.activations_b), 2)
    assert app.number_input(key="steering-alpha").value == pytest.approx(alpha)
    app.number_input(key="steering-n").set_value(1)
    app.button(key="steering-run").click().run()
    assert not app.exception and not app.error, app.error
    assert any(f"({kind_label('feature')})" in c.value and "blocks.15.hook" in c.value for c in app.caption)
    vector = feature_steering_vector(real_model, feature, sae_path=str(exact_sae))
    expected = steer_captures(real_model, cap_a, cap_b, layer=15, alpha=alpha, vector_file=vector.to_bytes(),
                              settings=GenerationSettings(1))
    table = next(df.value for df in app.dataframe if "KL vs unsteered (bits)" in df.value.columns)
    assert table["KL vs unsteered (bits)"].iloc[1] == pytest.approx(expected.steered.kl, rel=1e-4, abs=1e-8)
    assert table["KL vs unsteered (bits)"].iloc[1] > 0
    app.button(key="steering-feature-clear").click().run()  # back to A − B
    assert not app.exception and not any("SAE feature" in i.value for i in app.info)


def test_bad_input_table_sae_rows_in_the_app(app, tiny_folders, sae_cases):  # noqa: F811
    """Every SAE row of the bad-input table typed into the page's SAE box, one after the other in one
    session: one st.error with the table's phrase each, no exception, the request kept; then a good
    SAE works. The layer row: with a folder the page reads the SAE's own residual (it has no other
    layer to ask for), and says which."""
    open_features(app, a=GOOD, b=B, model=str(tiny_folders["llama"]))
    for name in SAE_CASE_NAMES:
        case = sae_cases[name]
        use_sae(app, case.path)
        if case.layer is not None:
            assert not app.error and any("residual 1" in c.value for c in app.caption), name
            continue
        assert len(app.error) == 1 and case.refused in app.error[0].value.replace("\\", ""), (
            name, [e.value for e in app.error])
        assert not table(app, "activation A")
        assert app.session_state[session.REQUEST_KEY].a == GOOD
    use_sae(app, sae_cases["other_model"].path)
    app.checkbox(key="features-any-model").check().run()  # the one refusal the user may override
    assert not app.exception and not app.error and table(app, "activation A")
