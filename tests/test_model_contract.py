"""Every registered model, on every input kind it accepts, keeps one contract (as timm tests each of its
registered models): it builds without fetching weights, answers a batch with one finite score per class,
trains (the loss reaches its parameters), gives embeddings its head turns into the same answer, and,
where the kind exports, exports to ONNX with the answers onnxruntime gives back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trilla.kinds import input_kind
from trilla.kinds.embeddings.audioset import DIMS, SECONDS
from trilla.kinds.protocols import Exports
from trilla.models.registry import InputSpec, build, list_models, params_class

SMALL = {"timm": {"backbone": "resnet10t"}}  # a small backbone of timm's, built without its weights
SPECS = {"image": {"kind": "image", "channels": 3, "size": 32}, "audio": {"kind": "audio", "bins": 32, "frames": 40},
         "embeddings": {"kind": "embeddings", "bins": DIMS, "frames": SECONDS}}
CASES = [(name, kind) for name in list_models() for kind in params_class(name).inputs]


def example(kind: str, spec: dict) -> torch.Tensor:
    found = input_kind(kind)
    if isinstance(found, Exports):
        return found.example_input(spec)
    return torch.rand(2, spec["frames"], spec["bins"]) * 255  # a kind that does not export: a batch as its rows give it


@pytest.mark.parametrize("name, kind", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_every_model_on_every_kind_it_takes(name, kind, tmp_path):
    torch.manual_seed(0)
    spec = SPECS[kind]
    model = build(params_class(name).model_validate({"name": name, **SMALL.get(name, {})}), InputSpec(**spec), 3, load_weights=False)
    x = example(kind, spec)

    model.train()
    out = model(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads) and all(g is None or torch.isfinite(g).all() for g in grads)

    model.eval()
    with torch.no_grad():
        answer, features = model(x), model.embed(x)
        assert features.ndim == 2 and features.shape[0] == 2
        torch.testing.assert_close(model.forward_head(features), answer)

    if not isinstance(input_kind(kind), Exports):
        return  # this kind exports nothing (embeddings are read from their files)
    import onnxruntime

    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False, verbose=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (given,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(given, answer.numpy(), rtol=1e-3, atol=1e-4)
