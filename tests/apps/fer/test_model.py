"""Tests of the FER networks and backbone checkpoint loading (CPU, tiny images)."""

from __future__ import annotations

import pytest
import timm
import torch

from noisylabel.apps.fer.model import (
    FEROutput,
    create_model,
    load_backbone_checkpoint,
)

torch.set_num_threads(1)


def _x(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant,has_aux", [("baseline", False), ("aea", False), ("full", True)])
def test_forward_shapes(variant: str, has_aux: bool) -> None:
    model = create_model(variant, num_classes=7)
    out = model(_x())
    assert isinstance(out, FEROutput)
    assert out.target.shape == (4, 7)
    assert (out.aux is not None) == has_aux
    if has_aux:
        assert out.aux.shape == (4, 7)


def test_unknown_variant_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown variant 'resnet50'"):
        create_model("resnet50")


def test_full_branches_share_init_but_not_heads() -> None:
    model = create_model("full")
    aux, tgt = model.aux.state_dict(), model.target.state_dict()
    for key in aux:
        if key.startswith("layers."):
            assert torch.equal(aux[key], tgt[key]), key
    assert not torch.equal(aux["head.weight"], tgt["head.weight"])
    # deep copies: changing one branch leaves the other alone
    with torch.no_grad():
        model.aux.layers[0][0].conv1.weight.add_(1.0)
    assert not torch.equal(model.aux.layers[0][0].conv1.weight, model.target.layers[0][0].conv1.weight)


def test_aea_train_uses_batch_mean_eval_is_batch_independent() -> None:
    torch.manual_seed(0)
    model = create_model("aea")
    x = _x(8)
    model.train()
    with torch.no_grad():
        alone = model(x[:2]).target  # training mode: depends on the batch (anchor = batch mean)
        together = model(x).target[:2]
    assert not torch.allclose(alone, together, atol=1e-5)
    model.eval()
    with torch.no_grad():
        alone = model(x[:2]).target
        together = model(x).target[:2]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-4)


def test_aea_batch_inference_depends_on_batch() -> None:
    torch.manual_seed(0)
    model = create_model("aea", anchor_inference="batch").eval()
    x = _x(8)
    with torch.no_grad():
        assert not torch.allclose(model(x[:2]).target, model(x).target[:2], atol=1e-5)


def test_trunk_trained_from_scratch_frozen_when_pretrained(tmp_path) -> None:
    model = create_model("full")
    assert all(p.requires_grad for p in model.trunk.parameters())
    path = tmp_path / "bare.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    frozen = create_model("full", pretrained=path)
    assert not any(p.requires_grad for p in frozen.trunk.parameters())
    assert all(p.requires_grad for p in frozen.target.parameters())
    frozen.train()
    assert not frozen.trunk.training  # frozen BatchNorm statistics
    unfrozen = create_model("full", pretrained=path, freeze_trunk=False)
    assert all(p.requires_grad for p in unfrozen.trunk.parameters())


def _reference_state(seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model("resnet18", pretrained=False).state_dict()


@pytest.mark.parametrize("layout", ["msceleb", "module", "bare"])
def test_checkpoint_layouts_load_the_weights(tmp_path, layout: str) -> None:
    ref = _reference_state()
    fc = {"fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)}
    body = {k: v for k, v in ref.items() if not k.startswith("fc.")}
    if layout == "msceleb":
        obj = {"state_dict": {**body, **fc}}
    elif layout == "module":
        obj = {"state_dict": {f"module.{k}": v for k, v in {**body, **fc}.items()}}
    else:
        obj = ref
    path = tmp_path / f"{layout}.pth"
    torch.save(obj, path)
    state, sha = load_backbone_checkpoint(path)
    assert len(sha) == 64
    assert not any(k.startswith("fc.") for k in state)
    torch.testing.assert_close(state["layer3.0.conv1.weight"], ref["layer3.0.conv1.weight"])
    model = create_model("full", pretrained=path)
    assert model.backbone_sha256 == sha
    torch.testing.assert_close(model.trunk[0].weight, ref["conv1.weight"])  # conv1
    for branch in (model.aux, model.target):  # both branches start from the same weights
        torch.testing.assert_close(branch.layers[2][1].conv2.weight, ref["layer4.1.conv2.weight"])


def test_checkpoint_missing_keys_named(tmp_path) -> None:
    ref = _reference_state()
    del ref["layer4.1.bn2.weight"]
    path = tmp_path / "missing.pth"
    torch.save({"state_dict": ref}, path)
    with pytest.raises(ValueError, match=r"missing keys: layer4\.1\.bn2\.weight") as info:
        load_backbone_checkpoint(path)
    assert "missing.pth" in str(info.value)


def test_checkpoint_wrong_shape_and_unexpected_named(tmp_path) -> None:
    ref = _reference_state()
    ref["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    ref["head.extra"] = torch.zeros(2)
    path = tmp_path / "wrong.pth"
    torch.save(ref, path)
    with pytest.raises(ValueError) as info:
        load_backbone_checkpoint(path)
    msg = str(info.value)
    assert "wrong.pth" in msg
    assert "conv1.weight (64, 3, 3, 3) (expected (64, 3, 7, 7))" in msg
    assert "unexpected keys: head.extra" in msg


def test_not_a_checkpoint(tmp_path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(ValueError, match="notes.txt is not a readable PyTorch checkpoint"):
        load_backbone_checkpoint(path)
    lst = tmp_path / "list.pth"
    torch.save([1, 2, 3], lst)
    with pytest.raises(ValueError, match="list.pth holds a list, not a state_dict"):
        load_backbone_checkpoint(lst)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_backbone_checkpoint(tmp_path / "absent.pth")
