"""All-background baseline: predicts 0 everywhere. Its scores are known in closed form
(class IoU 0; FB-IoU = half the background IoU), which makes it a check on the metric."""
from __future__ import annotations

import numpy as np

from bench.core.types import EpisodeInput


class AllBackground:
    name = "background"

    def fit(self, view, config: dict) -> None:
        pass

    def predict(self, episode: EpisodeInput) -> list[np.ndarray]:
        return [np.zeros(q.shape[:2], np.uint8) for q in episode.query_images]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
