# Exports a CIFAR-10 ResNet of He et al. (2016), section 4.2, as Idelbayev's pytorch_resnet_cifar10 trains and ships
# it (`pretrained_models/resnet20-12fca82f.th` … `resnet56-4bfd9763.th`, PyTorch checkpoints saved from
# nn.DataParallel), to ONNX opset 13 with every BatchNormalization kept as a node: input `input` [N, 3, 32, 32] (RGB,
# (x - mean) / std with ImageNet's mean 0.485, 0.456, 0.406 and std 0.229, 0.224, 0.225, as its trainer normalizes),
# output `logits` [N, 10] in CIFAR-10's class order.
#
# The network: a 3x3 conv (16 channels), three stages of n basic blocks (16, 32, 64 channels; depth 6n + 2), global
# average pooling, Linear 64 -> 10. Where a stage halves the map and doubles the channels, the shortcut is the paper's
# option A, parameter-free: every other pixel of the input, zero-padded with new channels on both sides. PyTorch
# exports it as a strided Slice and a Pad whose pads it computes in the graph (ConstantOfShape, Concat, Reshape,
# Slice, Transpose, Cast), a pattern of real exports that Sadg has to load.
#
# The written file is checked before the script ends: its graph, interpreted node by node with torch.nn.functional
# (onnx_reference.py, not through the nn.Module), must compute on random inputs what the module computes.
#
#   python3 tests/Sadg.Benchmarks/zoo/cifar_resnet_to_onnx.py resnet20-12fca82f.th OUT.onnx
#   (Debian: apt install python3-torch python3-onnx)
#
# Used by docs/benchmarks/cifar-resnet20.md.
import torch.nn as nn, torch.nn.functional as F
from onnx_reference import checkpoint_state, main


class BasicBlock(nn.Module):
    def __init__(self, inputs, outputs, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        # Option A: the channels added on each side of the subsampled input.
        self.widen = (outputs - inputs) // 2 if stride != 1 or inputs != outputs else None

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.widen is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.widen, self.widen))
        return F.relu(y + shortcut)


class CifarResNet(nn.Module):
    """Depth 6n + 2; the attribute names match the checkpoints' keys."""

    def __init__(self, n):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        inputs = 16
        for stage, width in enumerate([16, 32, 64]):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(inputs, width, 2 if stage > 0 and b == 0 else 1))
                inputs = width
            setattr(self, f'layer{stage + 1}', nn.Sequential(*blocks))
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x))))))
        x = F.avg_pool2d(x, int(x.shape[3]))
        return self.linear(x.view(x.shape[0], -1))


def load(checkpoint):
    """The network with the checkpoint's weights, its depth read from the checkpoint's blocks, in eval mode."""
    state = checkpoint_state(checkpoint)
    n = len({k.split('.')[1] for k in state if k.startswith('layer1.')})
    module = CifarResNet(n)
    module.load_state_dict(state)
    return module.eval()


if __name__ == '__main__':
    main(lambda checkpoint: (load(checkpoint), (3, 32, 32), True), "cifar_resnet_to_onnx.py")
