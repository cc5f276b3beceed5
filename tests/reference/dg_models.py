"""Reference PyTorch models for dgseg (tests/fixtures/make_fixtures.py, benchmarks).

Module and tensor names match what the C side reads and writes (docs/design.md §6):

* ResNet-18/34/50/101 in torchvision's layout (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
  ``layerX.0.downsample.0`` / ``downsample.1``), written here so torchvision is not needed,
  with the DeepLab output-stride rule (docs/datasets.md §7.1): at OS16 every block of layer4, the
  first one included, runs its 3x3 conv(s) with stride 1 and dilation = padding = 2, and the
  first block's downsample conv with stride 1; at OS8 layer3 likewise with dilation 2 and layer4
  with dilation 4. (torchvision's ``replace_stride_with_dilation`` keeps the previous dilation in
  the first block of a dilated layer; this does not.)
* DeepLabV3Plus (RobustNet ``DeepR{50,101}V3PlusD`` layout, align-corners bilinear upsampling).
* MnistCNN: DomainBed's MNIST_CNN followed by one linear layer (docs/datasets.md §10).

Only torch is imported; Python 3 with PyTorch >= 1.13.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 1e-5
BN_MOMENTUM = 0.1
AUX_WEIGHT = 0.4
IGNORE_INDEX = 255


def _bn(c):
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        # Both 3x3 convs take the layer's dilation (padding = dilation).
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn1 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = _bn(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = _bn(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


RESNET_CONFIGS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


def layer_strides_dilations(output_stride):
    """(stride, dilation) of layer1..layer4 for an output stride of 32, 16 or 8."""
    if output_stride == 32:
        return [(1, 1), (2, 1), (2, 1), (2, 1)]
    if output_stride == 16:
        return [(1, 1), (2, 1), (2, 1), (1, 2)]
    if output_stride == 8:
        return [(1, 1), (2, 1), (1, 2), (1, 4)]
    raise ValueError("output_stride must be 32, 16 or 8, got %r" % (output_stride,))


class ResNet(nn.Module):
    """torchvision-layout ResNet. ``include_top=False`` drops avgpool and fc (DeepLab backbone)."""

    def __init__(self, depth, output_stride=32, num_classes=1000, include_top=True):
        super().__init__()
        if depth not in RESNET_CONFIGS:
            raise ValueError("depth must be one of %s" % sorted(RESNET_CONFIGS))
        block, counts = RESNET_CONFIGS[depth]
        self.depth = depth
        self.output_stride = output_stride
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = _bn(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        sd = layer_strides_dilations(output_stride)
        self.layer1 = self._make_layer(block, 64, counts[0], *sd[0])
        self.layer2 = self._make_layer(block, 128, counts[1], *sd[1])
        self.layer3 = self._make_layer(block, 256, counts[2], *sd[2])
        self.layer4 = self._make_layer(block, 512, counts[3], *sd[3])
        self.channels = [64 * block.expansion, 128 * block.expansion,
                         256 * block.expansion, 512 * block.expansion]
        self.include_top = include_top
        if include_top:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride, dilation):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                _bn(planes * block.expansion),
            )
        # Every block of the layer (the first included) uses the layer's dilation.
        layers = [block(self.inplanes, planes, stride, dilation, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, 1, dilation))
        return nn.Sequential(*layers)

    def features(self, x):
        """Returns [layer1, layer2, layer3, layer4] outputs."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c1, c2, c3, c4]

    def forward(self, x):
        feats = self.features(x)
        if not self.include_top:
            return feats
        return self.fc(torch.flatten(self.avgpool(feats[3]), 1))


class ConvBN(nn.Module):
    """conv (no bias unless asked) -> BN -> ReLU; tensor names <prefix>.conv.*, <prefix>.bn.*"""

    def __init__(self, cin, cout, k, padding=0, dilation=1, bias=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=padding, dilation=dilation, bias=bias)
        self.bn = _bn(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _up(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class ASPPPool(nn.Module):
    def __init__(self, cin, cout=256):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = _bn(cout)

    def forward(self, x):
        y = F.adaptive_avg_pool2d(x, 1)
        y = F.relu(self.bn(self.conv(y)))
        return _up(y, x.shape[2:])


class ASPP(nn.Module):
    def __init__(self, cin, output_stride=16, cout=256):
        super().__init__()
        if output_stride == 16:
            rates = (6, 12, 18)
        elif output_stride == 8:
            rates = (12, 24, 36)
        else:
            raise ValueError("DeepLabV3Plus supports output_stride 16 or 8")
        self.rates = rates
        self.pool = ASPPPool(cin, cout)
        self.b0 = ConvBN(cin, cout, 1)
        self.b1 = ConvBN(cin, cout, 3, padding=rates[0], dilation=rates[0])
        self.b2 = ConvBN(cin, cout, 3, padding=rates[1], dilation=rates[1])
        self.b3 = ConvBN(cin, cout, 3, padding=rates[2], dilation=rates[2])
        self.project = ConvBN(5 * cout, cout, 1)

    def forward(self, x):
        y = torch.cat([self.pool(x), self.b0(x), self.b1(x), self.b2(x), self.b3(x)], 1)
        return self.project(y)


class Decoder(nn.Module):
    def __init__(self, c_low, c_aspp=256):
        super().__init__()
        self.low = ConvBN(c_low, 48, 1)
        self.fuse1 = ConvBN(c_aspp + 48, 256, 3, padding=1)
        self.fuse2 = ConvBN(256, 256, 3, padding=1)

    def forward(self, aspp, low_feat):
        low = self.low(low_feat)
        y = torch.cat([_up(aspp, low.shape[2:]), low], 1)  # ASPP first
        return self.fuse2(self.fuse1(y))


class AuxHead(nn.Module):
    def __init__(self, cin, num_classes, dropout=0.1):
        super().__init__()
        self.conv = nn.Conv2d(cin, 512, 3, padding=1, bias=True)
        self.bn = _bn(512)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(512, num_classes, 1, bias=True)

    def forward(self, x):
        return self.classifier(self.dropout(F.relu(self.bn(self.conv(x)))))


class DeepLabV3Plus(nn.Module):
    def __init__(self, backbone_depth, num_classes=19, output_stride=16, aux=False,
                 aux_dropout=0.1):
        super().__init__()
        self.backbone = ResNet(backbone_depth, output_stride=output_stride, include_top=False)
        c1, _, c3, c4 = self.backbone.channels
        self.aspp = ASPP(c4, output_stride)
        self.decoder = Decoder(c1)
        self.classifier = nn.Conv2d(256, num_classes, 1, bias=True)
        self.has_aux = aux
        if aux:
            self.aux = AuxHead(c3, num_classes, aux_dropout)

    def forward(self, x):
        c1, _, c3, c4 = self.backbone.features(x)
        y = self.decoder(self.aspp(c4), c1)
        logits = _up(self.classifier(y), x.shape[2:])
        if self.has_aux:
            return logits, self.aux(c3)
        return logits


def downsample_label(label, size):
    """Full label (N, H, W) -> (N, h, w) with PyTorch's legacy nearest rule
    (source index floor(i * in / out))."""
    y = F.interpolate(label[:, None].float(), size=tuple(size), mode="nearest")
    return y[:, 0].long()


def deeplab_loss(out, label, aux_weight=AUX_WEIGHT):
    """Returns (total, main, aux); aux is None without an auxiliary head.
    CE ignores 255 and averages over valid pixels."""
    label = label.long()
    if isinstance(out, tuple):
        logits, aux_logits = out
        main = F.cross_entropy(logits, label, ignore_index=IGNORE_INDEX)
        aux_lab = downsample_label(label, aux_logits.shape[2:])
        aux = F.cross_entropy(aux_logits, aux_lab, ignore_index=IGNORE_INDEX)
        return main + aux_weight * aux, main, aux
    main = F.cross_entropy(out, label, ignore_index=IGNORE_INDEX)
    return main, main, None


class MnistFeaturizer(nn.Module):
    def __init__(self, in_channels=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, padding=1)
        self.conv2 = nn.Conv2d(64, 128, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(128, 128, 3, 1, padding=1)
        self.conv4 = nn.Conv2d(128, 128, 3, 1, padding=1)
        self.bn0 = nn.GroupNorm(8, 64)
        self.bn1 = nn.GroupNorm(8, 128)
        self.bn2 = nn.GroupNorm(8, 128)
        self.bn3 = nn.GroupNorm(8, 128)

    def forward(self, x):
        x = self.bn0(F.relu(self.conv1(x)))
        x = self.bn1(F.relu(self.conv2(x)))
        x = self.bn2(F.relu(self.conv3(x)))
        x = self.bn3(F.relu(self.conv4(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class MnistCNN(nn.Module):
    """DomainBed MNIST_CNN + Linear(128, num_classes)."""

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.featurizer = MnistFeaturizer(in_channels)
        self.classifier = nn.Linear(128, num_classes)
        if in_channels == 1 and num_classes == 10:
            n = sum(p.numel() for p in self.parameters())
            assert n == 371850, "MnistCNN parameter count %d != 371850" % n

    def forward(self, x):
        return self.classifier(self.featurizer(x))


class ResNetFeaturizer(nn.Module):
    """DomainBed's ResNet featurizer: torchvision ResNet without fc, pooled and flattened."""

    def __init__(self, depth, dropout=0.0):
        super().__init__()
        self.network = ResNet(depth, include_top=False)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.n_outputs = self.network.channels[3]

    def forward(self, x):
        return self.dropout(torch.flatten(self.avgpool(self.network(x)[3]), 1))


class ResNetClassifier(nn.Module):
    """DomainBed's ERM network: featurizer (ResNet) + Linear classifier."""

    def __init__(self, depth, num_classes, dropout=0.0):
        super().__init__()
        self.featurizer = ResNetFeaturizer(depth, dropout)
        self.classifier = nn.Linear(self.featurizer.n_outputs, num_classes)

    def forward(self, x):
        return self.classifier(self.featurizer(x))


TORCHVISION_PARAM_COUNTS = {18: 11689512, 34: 21797672, 50: 25557032, 101: 44549160}


def self_test():
    """Structural checks (torchvision is not needed): parameter counts of the classification
    ResNets equal torchvision's, the output-stride rule, and the DeepLab feature sizes."""
    for depth, want in TORCHVISION_PARAM_COUNTS.items():
        net = ResNet(depth)
        n = sum(p.numel() for p in net.parameters())
        assert n == want, "ResNet-%d has %d parameters, torchvision %d" % (depth, n, want)
        names = list(net.state_dict())
        assert names[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                             "bn1.running_var", "bn1.num_batches_tracked"], names[:6]
        assert "layer2.0.downsample.0.weight" in names and "fc.bias" == names[-1]
    MnistCNN(1, 10)
    x = torch.zeros(1, 3, 65, 97)
    for depth in (18, 50):
        for os_, dil in ((32, (1, 1, 1, 1)), (16, (1, 1, 1, 2)), (8, (1, 1, 2, 4))):
            net = ResNet(depth, output_stride=os_, include_top=False).eval()
            with torch.no_grad():
                feats = net(x)
            sizes = [tuple(f.shape[2:]) for f in feats]
            expect = {32: [(17, 25), (9, 13), (5, 7), (3, 4)],
                      16: [(17, 25), (9, 13), (5, 7), (5, 7)],
                      8: [(17, 25), (9, 13), (9, 13), (9, 13)]}[os_]
            assert sizes == expect, (depth, os_, sizes)
            for li, layer in enumerate((net.layer1, net.layer2, net.layer3, net.layer4)):
                for bi, blk in enumerate(layer):
                    convs = [blk.conv1, blk.conv2] if depth < 50 else [blk.conv2]
                    for c in convs:
                        assert c.dilation == (dil[li], dil[li]) and c.padding == c.dilation
                    if blk.downsample is not None:
                        assert bi == 0
                        s = blk.downsample[0].stride[0]
                        assert s == (1 if li == 0 or dil[li] > 1 else 2), (depth, os_, li, s)
