"""Run by tests/test_pinning.py in a fresh interpreter: trains each pool net briefly through the
cached builders (the real path, thread pin included) into a new cache folder and prints one sha256
per net's weights as JSON. argv: dataset cache folder, output cache folder."""
import hashlib
import json
import sys
from pathlib import Path

import bench  # noqa: F401 - first, as the CLI does: the pins are set before torch or numpy load


def weights_sha(path: Path) -> str:
    import torch

    blob = torch.load(path, map_location="cpu", weights_only=False)
    state = blob["state_dict"] if isinstance(blob, dict) and "state_dict" in blob else blob
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def main(data_cache: str, out_cache: str) -> None:
    from backbones.pretrain import backbone_config, pretrained_backbone
    from backbones.trunks import TrunkConfig, pretrained_vgg16
    from bench.data.datasets import embedded_dataset, find_pool, mini_spec
    from pseudo_labels.config import pseudo_config
    from pseudo_labels.train import pool_cam, pool_saliency

    mini = embedded_dataset(Path(data_cache), mini_spec(), "openmoji5i-mini")
    pool, out = find_pool(mini), Path(out_cache)
    quiet = lambda *a: None  # noqa: E731
    cfg = pseudo_config({"cam_crop_epochs": 1, "cam_epochs": 1, "saliency_epochs": 1})
    paths = {"cam": pool_cam(mini, cfg, out, quiet)[2], "saliency": pool_saliency(mini, cfg, out, quiet)[2],
             "deeplab": pretrained_backbone(pool, backbone_config({"crop_epochs": 1, "steps": 3, "max_images": 16}), out, quiet)[2]}
    pretrained_vgg16(pool, TrunkConfig(epochs=1), out, quiet)
    paths["vgg16"] = next((out / "trunks").glob("*.pt"))
    print(json.dumps({k: weights_sha(p) for k, p in paths.items()}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
