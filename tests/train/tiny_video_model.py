"""A small video model that the toolkit does not define, loaded in the tests through ``--model file.py:make_model``.

Its conventions differ from the video-model protocol on purpose: channels-first time axis ``(B, 3, T, H, W)``,
inputs in 0 … 255 normalised by its own mean/std, a dict output ``{"logits": (B, C, T, H, W)}``, sizes that must
be multiples of 8. It declares them in ``steadyseg_adapter``. Every layer works on one frame at a time (kernel
1 in time), so, like a per-frame image model, nothing ties its frames together.
"""

from torch import nn


class TinyFrameNet(nn.Module):
    def __init__(self, num_classes: int = 2, width: int = 16):
        super().__init__()
        w = int(width)
        self.body = nn.Sequential(
            nn.Conv3d(3, w, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU(),
            nn.Conv3d(w, w, (1, 3, 3), padding=(0, 2, 2), dilation=(1, 2, 2)), nn.ReLU(),
            nn.Conv3d(w, w, (1, 3, 3), padding=(0, 4, 4), dilation=(1, 4, 4)), nn.ReLU(),
            nn.Conv3d(w, int(num_classes), 1))

    def forward(self, x):
        return {"logits": self.body(x)}


def make_model(num_classes: int = 2, width: int = 16) -> nn.Module:
    model = TinyFrameNet(num_classes=num_classes, width=width)
    model.steadyseg_adapter = {"layout": "BCTHW", "output_key": "logits", "scale": 255.0,
                               "mean": [128.0, 128.0, 128.0], "std": [64.0, 64.0, 64.0], "size_multiple": 8}
    return model
