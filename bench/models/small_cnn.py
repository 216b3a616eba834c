"""A small VGG-style CNN for 28-32 px grey images (Fashion-MNIST and the like), as a `backbones:` factory:

    backbones:
      - {name: small_cnn, model: bench/models/small_cnn.py:build, img_size: 28}

Two blocks of two 3x3 convolutions with batch norm, each block pooled 2x, then global average pooling and a
linear head: about 0.3 M parameters, several times the images per second of resnet18 on a CPU at this size
(resnet18's stem takes a 28 px image down to 7 px before its first block: little of its compute fits the task)."""

import torch.nn as nn


def block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def build(num_outputs: int, in_chans: int, pretrained: bool, img_size: int, width: int = 32) -> nn.Module:
    body = nn.Sequential(
        block(in_chans, width),
        block(width, 2 * width),
        block(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    if num_outputs == 0:  # pooled features, for a head of the workflow's own (data.meta_columns)
        return body
    return nn.Sequential(body, nn.Dropout(0.2), nn.Linear(4 * width, num_outputs))
