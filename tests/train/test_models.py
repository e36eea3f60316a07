"""The model registry and transfer learning: weights from files or torchvision's cache, frozen backbones,
and clear errors (never a hang) when weights are missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from storage.errors import GleanerError
from train.models import Net, SmallCNN, build_model, head_name
from train.weights import freeze_backbone, load_weights, set_train_mode


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_smallcnn_depths(depth: int) -> None:
    model, channels = build_model("smallcnn", 5, 1, depth)
    assert channels == 1
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 2 * depth
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 5)


def test_torchvision_models_by_name_take_grey_input() -> None:
    body, channels = build_model("resnet18", 3, 1)
    net = Net(body, 1, channels, [0.5], [0.25])
    net.eval()
    assert net(torch.rand(2, 1, 32, 32)).shape == (2, 3)
    assert head_name(body) == "fc"
    assert head_name(build_model("mobilenet_v3_small", 3, 3)[0]) == "classifier.3"
    with pytest.raises(GleanerError, match="unknown model 'resnet999'"):
        build_model("resnet999", 3, 3)


def test_weights_from_a_state_dict_with_a_new_head(tmp_path: Path) -> None:
    source = SmallCNN(num_classes=7, in_channels=1, depth=2)
    path = tmp_path / "pretrained.pt"
    torch.save(source.state_dict(), path)
    target, _ = build_model("smallcnn", 4, 1, 2)
    report = load_weights(target, str(path), "smallcnn")
    assert report["skipped"] == ["fc.bias", "fc.weight"] and report["new"] == ["fc.bias", "fc.weight"]
    for name, tensor in source.features.state_dict().items():
        assert torch.equal(target.features.state_dict()[name], tensor)


def test_wrong_architecture_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save(SmallCNN(3, 1, depth=1).state_dict(), path)
    with pytest.raises(GleanerError, match="lacks"):
        load_weights(build_model("smallcnn", 3, 1, 3)[0], str(path), "smallcnn")
    with pytest.raises(GleanerError, match=r"weights file not found: .*nope\.pt"):
        load_weights(build_model("smallcnn", 3, 1)[0], str(tmp_path / "nope.pt"), "smallcnn")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(GleanerError, match="cannot read weights"):
        load_weights(build_model("smallcnn", 3, 1)[0], str(bad), "smallcnn")


def test_torchvision_weight_names_use_the_local_cache_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    body, _ = build_model("resnet18", 10, 3)
    with pytest.raises(GleanerError, match=r"not in torchvision's cache .*resnet18-f37072fd\.pth"):
        load_weights(body, "IMAGENET1K_V1", "resnet18")  # an error at once: nothing is downloaded
    with pytest.raises(GleanerError, match="no weights named 'IMAGENET9'"):
        load_weights(body, "IMAGENET9", "resnet18")
    # a file in the cache, as torchvision would have left it: a 1000-class ImageNet state dict
    import torchvision

    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    imagenet = torchvision.models.resnet18(num_classes=1000)
    torch.save(imagenet.state_dict(), cache / "resnet18-f37072fd.pth")
    report = load_weights(body, "ResNet18_Weights.DEFAULT", "resnet18")
    assert report["new"] == ["fc.bias", "fc.weight"]
    assert torch.equal(body.conv1.weight, imagenet.conv1.weight)


def test_frozen_backbone_does_not_change() -> None:
    torch.manual_seed(0)
    body, channels = build_model("smallcnn", 3, 1, 2)
    net = Net(body, 1, channels, [0.5], [0.25])
    trained = freeze_backbone(body)
    assert trained == ["fc.weight", "fc.bias"]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=0.1)
    set_train_mode(net, frozen=True)
    for _ in range(3):
        loss = F.cross_entropy(net(torch.rand(8, 1, 16, 16)), torch.randint(0, 3, (8,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"body.fc.weight", "body.fc.bias"}  # batch-norm statistics did not drift either


def test_smallcnn_members_are_independent_networks_in_one_model() -> None:
    """members=3: every member's logits in training (each trained on its own loss), their mean in evaluation,
    and a member's loss moves only that member's weights."""
    torch.manual_seed(0)
    model = SmallCNN(4, 1, depth=2, members=3)
    x = torch.rand(5, 1, 16, 16)
    model.train()
    logits = model(x)
    assert logits.shape == (5, 4, 3)
    F.cross_entropy(logits[:, :, 0], torch.zeros(5, dtype=torch.long)).backward()
    conv = model.features[3]  # the second convolution: grouped, member k owns output group k
    assert isinstance(conv, torch.nn.Conv2d) and conv.groups == 3
    grad = conv.weight.grad.view(3, -1)  # type: ignore[union-attr]
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0
    model.eval()
    with torch.no_grad():
        members = model.fc(torch.flatten(model.pool(model.features(x)), 1))
        assert torch.allclose(model(x), members.mean(dim=1))
    assert head_name(model) == "fc"
