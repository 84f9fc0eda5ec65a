# Exports the ImageNet-pretrained MobileNetV1 x0.25 that RetinaFace (biubug6/Pytorch_Retinaface) uses as its
# backbone (`weights/mobilenetV1X0.25_pretrain.tar`, a PyTorch checkpoint: 27 Conv + BatchNorm + LeakyReLU(0.1)
# layers, 8 to 256 channels, global average pooling, Linear 256 -> 1000; trained with torchvision's ImageNet
# normalization) to ONNX opset 13 with every BatchNormalization kept as a node: input `input` [N, 3, 224, 224]
# (RGB, (x - mean) / std with ImageNet's mean and std), output `logits` [N, 1000].
#
# The written file is checked before the script ends: its graph, interpreted node by node with torch.nn.functional
# from the ONNX attributes and initializers (onnx_reference.py, not through the nn.Module), must compute on random
# inputs what the module computes; the max abs difference is printed and must be < 1e-4. ONNX Runtime's top-1 on real images is the
# benchmark's FP32 row.
#
#   python3 tests/Sadg.Benchmarks/zoo/retinaface_backbone_to_onnx.py mobilenetV1X0.25_pretrain.tar OUT.onnx
#   (Debian: apt install python3-torch python3-onnx)
#
# Used by docs/benchmarks/mobilenet-leaky.md.
import torch.nn as nn
from onnx_reference import checkpoint_state, main


def conv_bn(inp, oup, stride, leaky):
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup),
                         nn.LeakyReLU(negative_slope=leaky, inplace=True))


def conv_dw(inp, oup, stride, leaky=0.1):
    return nn.Sequential(nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                         nn.LeakyReLU(negative_slope=leaky, inplace=True),
                         nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
                         nn.LeakyReLU(negative_slope=leaky, inplace=True))


class MobileNetV1(nn.Module):
    """The backbone's layers as RetinaFace's models/net.py declares them (the names match the checkpoint's keys)."""

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(conv_bn(3, 8, 2, 0.1), conv_dw(8, 16, 1), conv_dw(16, 32, 2), conv_dw(32, 32, 1),
                                    conv_dw(32, 64, 2), conv_dw(64, 64, 1))
        self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *[conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))
        self.avg = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(256, 1000)

    def forward(self, x):
        x = self.avg(self.stage3(self.stage2(self.stage1(x))))
        return self.fc(x.view(-1, 256))


def load(checkpoint):
    """The backbone with the checkpoint's weights (saved from nn.DataParallel: keys prefixed `module.`), in eval mode."""
    module = MobileNetV1()
    module.load_state_dict(checkpoint_state(checkpoint))
    return module.eval()


if __name__ == '__main__':
    # Constant folding off: the file the benchmark pages measured (SHA-256 ba2ebe8f…01af).
    main(lambda checkpoint: (load(checkpoint), (3, 224, 224), False), "retinaface_backbone_to_onnx.py")
