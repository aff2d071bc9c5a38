"""The inference runtimes give torch's features on real photos, and are chosen as documented."""

from __future__ import annotations

import importlib.util
import types
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from imgclust.decode import decode
from imgclust.embed import Embedder
from imgclust.exceptions import ConfigError, ModelUnavailableError
from imgclust.models import get_spec
from imgclust.models import runtime as rt

SKIMAGE_DATA = Path(str(resources.files("skimage") / "data"))
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")
MODEL = "efficientnet_lite0"

needs_openvino = pytest.mark.skipif(not rt.openvino_available(), reason="openvino not installed")


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    pre = get_spec(MODEL).preprocess
    arrays = []
    for name in PHOTOS:
        out = decode(str(SKIMAGE_DATA / name), pre)
        assert out.array is not None, out.reason
        arrays.append(out.array)
    return np.stack(arrays)


@pytest.fixture(scope="module")
def torch_features(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return rt.TorchRuntime(MODEL, "cpu")(batch)


@pytest.mark.slow
@needs_openvino
def test_openvino_matches_torch_on_real_photos(
    batch: np.ndarray, torch_features: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    ov = rt.OpenVinoRuntime(MODEL, cache_dir=tmp_path)
    logits, emb = ov(batch)
    ref_logits, ref_emb = torch_features
    assert logits.shape == (len(PHOTOS), 1000) and emb.shape == (len(PHOTOS), 1280)
    assert np.abs(logits - ref_logits).max() < 1e-3
    assert np.abs(emb - ref_emb).max() < 1e-3
    assert (logits.argmax(1) == ref_logits.argmax(1)).all()
    # A batch size other than the one converted with works too.
    one_logits, _ = ov(batch[:1])
    assert np.abs(one_logits - ref_logits[:1]).max() < 1e-3


@pytest.mark.slow
@needs_openvino
def test_openvino_map_keeps_order_and_passes_empty_batches_through(
    batch: np.ndarray, torch_features: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    ov = rt.OpenVinoRuntime(MODEL, cache_dir=tmp_path)
    # Batches of different sizes in flight together, with empty slots between them.
    slices = [slice(0, 1), None, slice(1, 4), slice(4, 5), None, slice(0, 5), slice(2, 3)]
    jobs = [(i, None if s is None else batch[s]) for i, s in enumerate(slices)]
    got = list(ov.map(iter(jobs)))
    assert [key for key, _ in got] == list(range(len(slices)))
    ref_logits, ref_emb = torch_features
    for (_, outputs), s in zip(got, slices, strict=True):
        if s is None:
            assert outputs is None
            continue
        assert outputs is not None
        assert np.abs(outputs[0] - ref_logits[s]).max() < 1e-3
        assert np.abs(outputs[1] - ref_emb[s]).max() < 1e-3
    # A caller that stops early leaves the runtime usable.
    next(iter(ov.map(iter(jobs))))
    assert np.abs(ov(batch)[0] - ref_logits).max() < 1e-3


@pytest.mark.slow
@needs_openvino
def test_openvino_conversion_is_cached_and_reused(tmp_path: Path, batch: np.ndarray) -> None:
    first = rt.OpenVinoRuntime(MODEL, cache_dir=tmp_path)
    assert first.ir_path.is_file() and first.ir_path.with_suffix(".bin").is_file()
    stamp = first.ir_path.stat().st_mtime_ns
    second = rt.OpenVinoRuntime(MODEL, cache_dir=tmp_path)
    assert second.ir_path == first.ir_path and second.ir_path.stat().st_mtime_ns == stamp
    assert np.abs(second(batch[:2])[0] - first(batch[:2])[0]).max() < 1e-5


@pytest.mark.slow
@needs_openvino
def test_damaged_cache_is_rebuilt(tmp_path: Path, batch: np.ndarray) -> None:
    first = rt.OpenVinoRuntime(MODEL, cache_dir=tmp_path)
    first.ir_path.write_text("not a model")
    second = rt.OpenVinoRuntime(MODEL, cache_dir=tmp_path)
    assert second(batch[:1])[0].shape == (1, 1000)


def test_auto_picks_openvino_on_cpu_only_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rt, "openvino_available", lambda: True)
    assert rt.resolve_runtime("auto", "cpu") == "openvino"
    assert rt.resolve_runtime("auto", "cuda") == "torch"
    monkeypatch.setattr(rt, "openvino_available", lambda: False)
    assert rt.resolve_runtime("auto", "cpu") == "torch"
    with pytest.raises(ModelUnavailableError, match="pip install openvino"):
        rt.resolve_runtime("openvino", "cpu")


def test_bad_runtime_choices_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown runtime"):
        rt.resolve_runtime("tensorrt", "cpu")
    with pytest.raises(ConfigError, match="CPU only"):
        rt.resolve_runtime("openvino", "cuda")


def test_embedder_uses_the_chosen_runtime(
    batch: np.ndarray, torch_features: tuple[np.ndarray, np.ndarray]
) -> None:
    embedder = Embedder(MODEL, device="cpu", workers=0, runtime="torch")
    logits, _ = embedder.forward(batch)
    assert embedder.runtime == "torch"
    assert np.abs(logits - torch_features[0]).max() < 1e-4


@pytest.mark.slow
@needs_openvino
def test_bf16_is_its_own_feature_space_close_to_fp32(
    batch: np.ndarray, torch_features: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from imgclust.models import get_spec, split_precision, with_precision

    name = with_precision(MODEL, "bf16")
    assert name == f"{MODEL}+bf16" and split_precision(name) == (MODEL, "bf16")
    assert get_spec(name).precision == "bf16" and get_spec(MODEL).precision == "fp32"
    assert get_spec(name).preprocess == get_spec(MODEL).preprocess
    with pytest.raises(ConfigError, match="precision"):
        with_precision(MODEL, "int4")
    logits, emb = rt.OpenVinoRuntime(name, cache_dir=tmp_path)(batch)
    ref_logits, ref_emb = torch_features
    # Nearly the same classes and directions (exactly the same where the CPU has no bf16:
    # OpenVINO then computes in fp32). Near ties may swap: bf16's top class is in fp32's top 3.
    top3 = np.argsort(-ref_logits, axis=1)[:, :3]
    assert all(t in row for t, row in zip(logits.argmax(1), top3, strict=True))
    cos = (emb * ref_emb).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref_emb, axis=1)
    assert cos.min() > 0.98


needs_int8 = pytest.mark.skipif(
    not (rt.openvino_available() and importlib.util.find_spec("nncf") is not None),
    reason="openvino or nncf not installed",
)


@pytest.mark.slow
@needs_int8
def test_int8_is_calibrated_once_cached_and_close_to_fp32(
    batch: np.ndarray,
    torch_features: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from imgclust.models import with_precision

    name = with_precision(MODEL, "int8")
    first = rt.OpenVinoRuntime(name, cache_dir=tmp_path)
    assert "Statistics collection" not in "".join(capsys.readouterr())  # NNCF kept quiet
    cached = list(tmp_path.glob("openvino/*-int8-*/model.xml"))
    assert len(cached) == 1 and first.ir_path == cached[0]
    import openvino

    ops = [op.get_type_name() for op in openvino.Core().read_model(cached[0]).get_ops()]
    assert ops.count("FakeQuantize") > 30  # int8 layers, not the fp32 model again
    logits, emb = first(batch)
    ref_logits, ref_emb = torch_features
    # Measured on the labelled sets: the same clusters (bench/results/quality.md); on these
    # five photos the top class stays within fp32's top 5 and the embedding's direction holds.
    top5 = np.argsort(-ref_logits, axis=1)[:, :5]
    assert all(t in row for t, row in zip(logits.argmax(1), top5, strict=True))
    cos = (emb * ref_emb).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref_emb, axis=1)
    assert cos.min() > 0.9 and cos.mean() > 0.95
    assert np.abs(emb - ref_emb).max() > 1e-3  # really another feature space
    # The second runtime reads the calibrated model instead of calibrating again.
    mtime = cached[0].stat().st_mtime_ns
    again, _ = rt.OpenVinoRuntime(name, cache_dir=tmp_path)(batch)
    assert cached[0].stat().st_mtime_ns == mtime
    assert np.allclose(again, logits, atol=1e-4)


def test_int8_is_refused_on_torch() -> None:
    from imgclust.models import with_precision

    with pytest.raises(ConfigError, match="int8"):
        rt.TorchRuntime(with_precision(MODEL, "int8"), "cpu")


def test_auto_precision_is_int8_on_openvino_and_fp32_on_torch() -> None:
    from imgclust.config import EmbedConfig
    from imgclust.embed import model_for, resolve_precision
    from imgclust.models.quantize import int8_available

    on_ov = rt.openvino_available() and int8_available()
    assert resolve_precision("auto", "auto", "cpu") == ("int8" if on_ov else "fp32")
    assert resolve_precision("auto", "torch", "cpu") == "fp32"
    assert resolve_precision("bf16", "auto", "cpu") == "bf16"
    assert model_for(EmbedConfig(precision="fp32")) == MODEL
    assert model_for(EmbedConfig(runtime="torch")) == MODEL
    # A model named with its precision keeps it under auto, and an explicit one replaces it.
    assert model_for(EmbedConfig(model=f"{MODEL}+bf16")) == f"{MODEL}+bf16"
    assert model_for(EmbedConfig(model=f"{MODEL}+bf16", precision="fp32")) == MODEL


def test_int8_models_run_on_the_cpu_even_where_a_gpu_is(monkeypatch: pytest.MonkeyPatch) -> None:
    # A collection clustered in int8 on a laptop, then `assign`ed on a GPU machine.
    import imgclust.embed as embed_mod

    monkeypatch.setattr(embed_mod, "resolve_device", lambda d: "cuda" if d == "auto" else d)
    built: list[tuple[str, str]] = []
    fake = types.SimpleNamespace(name="fake")  # no model is built: only where it would run
    monkeypatch.setattr(
        embed_mod, "create_runtime", lambda m, runtime, device: built.append((m, device)) or fake
    )
    embed_mod.Embedder(f"{MODEL}+int8", device="auto", workers=0).load()
    embed_mod.Embedder(MODEL, device="auto", workers=0).load()
    assert built == [(f"{MODEL}+int8", "cpu"), (MODEL, "cuda")]
