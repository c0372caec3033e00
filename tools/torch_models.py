"""PyTorch counterparts of cohort's models, written out here so that the
benchmark scripts need PyTorch only (no torchvision): parameter names, shapes and
layer order follow torchvision's ResNet and cohort's DeepLabV3+ head
(models/deeplabv3plus.hpp), so a side-by-side time compares the same network.
tests/parity/check_torch_models.py proves it: these modules, given the weights of
torchvision's resnet50 and of the parity suite's DeepLabV3+ reference, compute
the same outputs.

    from torch_models import resnet, DeepLabV3Plus
"""
import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    """torchvision's bottleneck: stride on the 3x3 conv, 1x1 projection shortcut."""

    def __init__(self, cin, width, stride, dilation, downsample):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                         nn.BatchNorm2d(cout)) if downsample else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


BLOCKS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}


class ResNet(nn.Module):
    """Bottleneck ResNet (50 or 101). num_classes 0: no avgpool/fc (a backbone).
    dilate: per layer2..4, replace the stride by dilation as torchvision does."""

    def __init__(self, depth=50, num_classes=1000, dilate=(False, False, False)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, dilation = 64, 1
        for stage, blocks in enumerate(BLOCKS[depth]):
            width = 64 << stage
            stride = 1 if stage == 0 else 2
            previous = dilation
            if stage > 0 and dilate[stage - 1]:
                dilation *= stride
                stride = 1
            layer = []
            for j in range(blocks):
                layer.append(Bottleneck(cin, width, stride if j == 0 else 1,
                                        previous if j == 0 else dilation, j == 0))
                cin = width * 4
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layer))
        self.fc = nn.Linear(cin, num_classes) if num_classes > 0 else None

    def features(self, x):
        """(layer1, layer4) features."""
        low = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        return low, self.layer4(self.layer3(self.layer2(low)))

    def forward(self, x):
        _, y = self.features(x)
        if self.fc is None:
            return y
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


def conv_bn_relu(cin, cout, k, dilation=1):
    return [nn.Conv2d(cin, cout, k, padding=(k // 2) * dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ImagePooling(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(nn.AdaptiveAvgPool2d(1), *conv_bn_relu(cin, cout, 1))

    def forward(self, x):
        return F.interpolate(super().forward(x), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)


class ASPP(nn.Module):
    """1x1, three atrous 3x3 and image pooling branches; projection + dropout."""

    def __init__(self, rates, dropout):
        super().__init__()
        branches = [nn.Sequential(*conv_bn_relu(2048, 256, 1))]
        branches += [nn.Sequential(*conv_bn_relu(2048, 256, 3, r)) for r in rates]
        branches.append(ImagePooling(2048, 256))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*conv_bn_relu(5 * 256, 256, 1), nn.Dropout(dropout))

    def forward(self, x):
        return self.project(torch.cat([b(x) for b in self.convs], dim=1))


class Decoder(nn.Module):
    """48-channel projection of layer1, concatenated with the upsampled ASPP output,
    then two 3x3 conv-BN-ReLU."""

    def __init__(self):
        super().__init__()
        self.low_level = nn.Sequential(*conv_bn_relu(256, 48, 1))
        self.fuse = nn.Sequential(*conv_bn_relu(256 + 48, 256, 3), *conv_bn_relu(256, 256, 3))

    def forward(self, aspp, low):
        aspp = F.interpolate(aspp, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([aspp, self.low_level(low)], dim=1))


class DeepLabV3Plus(nn.Module):
    """cohort's DeepLabV3+ (models/deeplabv3plus.hpp, same parameter names): dilated
    ResNet, ASPP, decoder on layer1, 1x1 classifier, optional 1x1 depth head and
    learned uncertainty weights ("loss.log_vars")."""

    def __init__(self, num_classes=19, depth=50, output_stride=16, depth_head=False,
                 dropout=0.1):
        super().__init__()
        dilate = (False, False, True) if output_stride == 16 else (False, True, True)
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        self.backbone = ResNet(depth, 0, dilate)
        self.aspp = ASPP(rates, dropout)
        self.decoder = Decoder()
        self.classifier = nn.Conv2d(256, num_classes, 1)
        self.depth_head = nn.Conv2d(256, 1, 1) if depth_head else None
        self.loss = UncertaintyWeighting() if depth_head else None

    def forward(self, x):
        """Logits (and depth) at the input's size."""
        low, high = self.backbone.features(x)
        d = self.decoder(self.aspp(high), low)
        up = lambda t: F.interpolate(t, size=x.shape[-2:], mode="bilinear", align_corners=False)
        logits = up(self.classifier(d))
        return (logits, up(self.depth_head(d))) if self.depth_head is not None else logits

    def balanced(self, seg_loss, depth_loss):
        return self.loss(seg_loss, depth_loss)


class UncertaintyWeighting(nn.Module):
    """Sum of exp(-s_i) L_i / 2 + s_i / 2 with learned s_i ("log_vars")."""

    def __init__(self):
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(2))

    def forward(self, seg_loss, depth_loss):
        total = 0
        for i, task_loss in enumerate((seg_loss, depth_loss)):
            total = total + 0.5 * torch.exp(-self.log_vars[i]) * task_loss + 0.5 * self.log_vars[i]
        return total
