import json

import numpy as np
import pytest
import torch

from bench.data.classes import VOC_CLASSES
from bench.data.embedded.sprites import class_sources, pool_classes
from bench.core.errors import BenchError
from pseudo_labels.config import PseudoConfig, changed_settings, pseudo_config
from pseudo_labels.generate import build_pipeline, class_maps, gated, generate_pseudo_masks, pseudo_mask
from pseudo_labels.words import FastTextVectors, Weighting, phrase_vector, similarities, word_vectors

# Nets small enough to train in a second or two on the mini pool: plumbing, not quality.
TINY = {"cam_width": 8, "cam_crop_epochs": 1, "cam_epochs": 2, "cam_batch": 16, "saliency_width": 8, "saliency_epochs": 1}


@pytest.fixture(scope="session")
def tiny_cfg() -> PseudoConfig:
    return pseudo_config(TINY)


# ---- eq. 2: word-vector weights -------------------------------------------------------------

def test_weightings_on_a_hand_computed_case():
    sim = np.array([[0.9, -0.2, 0.5, 0.1]])
    np.testing.assert_allclose(Weighting("cosine").weights(sim), [[0.9, 0.0, 0.5, 0.1]])  # negatives clipped
    np.testing.assert_allclose(Weighting("topk", k=2).weights(sim), [[0.9, 0.0, 0.5, 0.0]])
    e = np.exp((sim - 0.9) / 0.5)
    np.testing.assert_allclose(Weighting("softmax", temperature=0.5).weights(sim), e / e.sum())
    with pytest.raises(BenchError, match="unknown weighting"):
        Weighting("median").weights(sim)


class FakeVectors:
    name = "fake"

    def __init__(self, table):
        self.table = {k: np.asarray(v, float) for k, v in table.items()}

    def vector(self, word):
        return self.table.get(word)


def test_phrase_vector_weights_the_head_noun_and_aliases_multiword_names():
    v = FakeVectors({"potted": [1, 0, 0], "plant": [0, 1, 0], "wolf": [0, 0, 1]})
    expected = np.array([0.5, 0.5, 0]) / np.linalg.norm([0.5, 0.5, 0])
    np.testing.assert_allclose(phrase_vector(v, "pottedplant"), expected)  # alias "potted plant", head "plant"
    np.testing.assert_allclose(phrase_vector(v, "wolf face"), [0, 0, 1])  # alias drops the misleading head "face"
    sim = similarities(v, ["pottedplant"], ["wolf face", "plant"])
    np.testing.assert_allclose(sim, [[0.0, 0.5 / np.linalg.norm([0.5, 0.5])]])


def test_unknown_word_is_a_clear_error_naming_the_word():
    v = FakeVectors({"plant": [0, 1, 0]})
    with pytest.raises(BenchError, match="'zorblax'.*class 'zorblax plant'"):
        phrase_vector(v, "zorblax plant")
    # CAM-side names may drop an unknown modifier, never every word
    np.testing.assert_allclose(phrase_vector(v, "zorblax plant", strict=False), [0, 1, 0])
    with pytest.raises(BenchError, match="'zorblax'"):
        phrase_vector(v, "zorblax", strict=False)


def test_glove_vectors_are_real_and_every_class_name_has_one():
    from bench.data.classes import COCO_CLASSES

    glove = word_vectors("glove")
    assert similarities(glove, list(COCO_CLASSES), ["wolf face"]).shape == (80, 1)
    names = [name for _, name in pool_classes()]
    sim = similarities(glove, list(VOC_CLASSES), names)
    assert sim.shape == (20, len(names))
    row = sim[VOC_CLASSES.index("sheep")]
    top = {names[k] for k in np.argsort(-row)[:3]}
    assert top & {"goat", "pig"}, top  # real vectors: sheep sits next to farm animals
    with pytest.raises(BenchError, match="'qwxzv'"):
        phrase_vector(glove, "qwxzv")


def test_fasttext_bin_and_vec_on_a_tiny_trained_model(tmp_path):
    fasttext = pytest.importorskip("fasttext")
    words = "cat dog sheep goat cow pig horse plant tree flower table chair sofa bottle glass".split()
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words, 12)) for _ in range(300)) + "\n")
    model = fasttext.train_unsupervised(str(corpus), model="skipgram", dim=8, epoch=2, minCount=1, thread=1, verbose=0)
    model.save_model(str(tmp_path / "tiny.bin"))
    vec = tmp_path / "tiny.vec"
    vocab = model.get_words()
    vec.write_text(f"{len(vocab)} 8\n" + "".join(
        w + " " + " ".join(f"{x:.6f}" for x in model.get_word_vector(w)) + "\n" for w in vocab))

    bin_vectors = word_vectors("fasttext", tmp_path / "tiny.bin")
    np.testing.assert_allclose(bin_vectors.vector("sheep"), model.get_word_vector("sheep"), rtol=1e-6)
    assert bin_vectors.vector("sheeps") is not None  # subwords: no out-of-vocabulary words in a .bin
    text_vectors = FastTextVectors(vec)
    np.testing.assert_allclose(text_vectors.vector("goat"), model.get_word_vector("goat"), atol=1e-5)
    a, b = model.get_word_vector("sheep"), model.get_word_vector("goat")
    cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    np.testing.assert_allclose(similarities(bin_vectors, ["sheep"], ["goat"]), [[cos]], rtol=1e-5)
    np.testing.assert_allclose(similarities(text_vectors, ["sheep"], ["goat"]), [[cos]], atol=1e-4)
    assert bin_vectors.fingerprint() != text_vectors.fingerprint()
    with pytest.raises(BenchError, match="missing.bin not found"):
        word_vectors("fasttext", tmp_path / "missing.bin")
    with pytest.raises(BenchError, match="needs a model file"):
        word_vectors("fasttext", "")


# ---- eq. 3 and the mask rule ----------------------------------------------------------------

def test_class_maps_gate_and_threshold_on_a_hand_computed_case():
    t = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]]])  # K=2 CAMs, 2x2
    w = np.array([[0.75, 0.25], [0.0, 0.0]])  # class 1 leans on CAM 0; class 2 has no weight
    maps = class_maps(t, w, (2, 2)).numpy()
    # T-bar_1 = [[.75, 0], [0, .25]] -> min-max -> [[1, 0], [0, 1/3]]; class 2 stays all zero
    np.testing.assert_allclose(maps[0, 0], [[1, 0], [0, 1 / 3]], atol=1e-6)
    np.testing.assert_allclose(maps[0, 1], 0.0)
    sal = np.array([[0.9, 0.9], [0.9, 0.4]])
    cfg = PseudoConfig(gate="hard", saliency_threshold=0.5, threshold=0.3)
    np.testing.assert_allclose(gated(maps[0, :1], sal, cfg), [[[1, 0], [0, 0]]], atol=1e-6)
    np.testing.assert_allclose(gated(maps[0, :1], sal, PseudoConfig(gate="soft")), [[[0.9, 0], [0, 0.4 / 3]]], atol=1e-6)
    assert gated(maps[0, :1], None, cfg) is maps[0, :1] or np.array_equal(gated(maps[0, :1], None, cfg), maps[0, :1])
    # two labelled classes: argmax among them where the winner reaches the threshold
    two = np.array([[[0.9, 0.2], [0.5, 0.1]], [[0.1, 0.8], [0.6, 0.2]]])
    np.testing.assert_array_equal(pseudo_mask(two, [3, 7], 0.3), [[3, 7], [7, 0]])
    np.testing.assert_array_equal(pseudo_mask(two[:0], [], 0.3), np.zeros((2, 2)))


def test_cam_normalisations_on_a_hand_computed_case():
    from pseudo_labels.nets import normalised_cams

    cams = torch.tensor([[[[-3.0, -1.0], [-2.0, -1.5]], [[4.0, 0.0], [-2.0, 2.0]]]])
    minmax = normalised_cams(cams, mode="minmax")
    torch.testing.assert_close(minmax[0, 0], torch.tensor([[0.0, 1.0], [0.5, 0.75]]))
    torch.testing.assert_close(minmax[0, 1], torch.tensor([[1.0, 1 / 3], [0.0, 2 / 3]]))
    relu = normalised_cams(cams, mode="relu_max")
    torch.testing.assert_close(relu[0, 0], torch.zeros(2, 2))  # a never-positive class vanishes
    torch.testing.assert_close(relu[0, 1], torch.tensor([[1.0, 0.0], [0.0, 0.5]]))
    scaled = normalised_cams(cams, torch.tensor([[0.5, 0.1]]))
    torch.testing.assert_close(scaled[0, 1], 0.1 * minmax[0, 1])


# ---- disjointness ---------------------------------------------------------------------------

VOC_WORDS = {"aeroplane", "airplane", "plane", "bicycle", "bike", "bird", "boat", "ship", "bottle", "bus", "car",
             "cat", "chair", "cow", "table", "dog", "horse", "motorbike", "motorcycle", "person", "man", "woman",
             "plant", "sheep", "sofa", "couch", "train", "tv", "monitor", "television"}


def test_no_benchmark_class_in_the_cam_training_data(mini):
    pool = pool_classes()
    words = {w for _, name in pool for w in name.replace("-", " ").split()}
    assert not words & VOC_WORDS, words & VOC_WORDS
    bench_codes = {s.codepoints for sources in class_sources().values() for s in sources}
    assert not {code for code, _ in pool} & bench_codes
    from bench.data.datasets import pool_dataset

    p = pool_dataset(mini)
    assert not set(p.class_names) & set(VOC_CLASSES)
    labels = json.loads((p.root / "image_labels.json").read_text())
    assert all(1 <= c <= len(p.class_names) for cs in labels.values() for c in cs)
    assert not set(p.ids("train")) & set(mini.ids("train") + mini.ids("val"))


def test_imagenet_exclusions_match_torchvision_names_and_remove_hyponyms():
    from pseudo_labels.vgg_cam import exclusions, imagenet_categories, kept_imagenet_classes

    from bench.data.classes import COCO_CLASSES

    cats = imagenet_categories()
    table = exclusions()["pascal"]
    assert set(table) == set(VOC_CLASSES) and set(exclusions()["coco"]) == set(COCO_CLASSES)
    for pairs in list(table.values()) + list(exclusions()["coco"].values()):
        for i, name in pairs:
            assert cats[i] == name
    coco_kept = dict(kept_imagenet_classes(COCO_CLASSES)).values()
    assert {"zebra", "teddy", "tabby", "Chihuahua", "goblet"}.isdisjoint(coco_kept) and "tiger" in coco_kept
    kept = dict(kept_imagenet_classes(VOC_CLASSES))
    assert not set(range(151, 269)) & set(kept)  # every dog breed goes with "dog"
    assert {"tabby", "airliner", "school bus", "studio couch", "dining table"}.isdisjoint(kept.values())
    assert "tiger" in kept.values() and len(kept) == 1000 - sum(len(v) for v in table.values())
    with pytest.raises(BenchError, match="no ImageNet exclusion list"):
        kept_imagenet_classes(["zebra crossing"])


def test_every_imagenet_name_has_glove_vectors_for_all_its_words():
    """The VGG-16 CAM route's w_k needs a vector for each kept ImageNet class; 29 names (rare
    breeds, 'barracouta', 'bottlecap', 'chiffonier', ...) had none and failed `cam=vgg16`.
    Strict: every word of the aliased phrase, so no name is silently reduced to a modifier."""
    from bench.data.classes import COCO_CLASSES
    from pseudo_labels.vgg_cam import imagenet_categories, kept_imagenet_classes

    glove = word_vectors("glove")
    vectors = [phrase_vector(glove, name, strict=True) for name in imagenet_categories()]
    assert len(vectors) == 1000 and all(np.isclose(np.linalg.norm(v), 1.0) for v in vectors)
    for benchmark in (VOC_CLASSES, COCO_CLASSES):
        kept = [n for _, n in kept_imagenet_classes(benchmark)]
        assert similarities(glove, list(benchmark), kept).shape == (len(benchmark), len(kept))
    sim = similarities(glove, ["sheep"], ["barracouta", "komondor", "chiffonier"])[0]
    assert sim[1] == sim.max()  # the aliased sheepdog is the nearest of the three to sheep


def test_fully_convolutional_head_reproduces_the_linear_classifier():
    from torch import nn

    from pseudo_labels.vgg_cam import fully_convolutional

    torch.manual_seed(0)
    clf = nn.Sequential(nn.Linear(4 * 3 * 3, 6), nn.ReLU(), nn.Dropout(), nn.Linear(6, 5))
    x = torch.randn(2, 4, 3, 3)
    fcn = fully_convolutional(clf.eval(), kernel=3)
    torch.testing.assert_close(fcn(x)[:, :, 0, 0], clf(x.flatten(1)))
    assert fcn(torch.randn(1, 4, 7, 7)).shape == (1, 5, 5, 5)


def test_missing_or_wrong_weight_files_are_clear_errors(tmp_path, mini, cache_dir):
    from pseudo_labels.onnx_saliency import OnnxSaliency
    from pseudo_labels.vgg_cam import load_vgg16

    with pytest.raises(BenchError, match="nope.pth not found.*cam_weights="):
        load_vgg16(tmp_path / "nope.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(BenchError, match="bad.pth is not a torchvision VGG-16"):
        load_vgg16(tmp_path / "bad.pth")
    data = (tmp_path / "bad.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(BenchError, match="cut.pth is truncated or not a PyTorch weight file.*cam_weights="):
        load_vgg16(tmp_path / "cut.pth")
    with pytest.raises(BenchError, match="nope.onnx not found"):
        OnnxSaliency(tmp_path / "nope.onnx")
    with pytest.raises(BenchError, match="saliency_path="):
        build_pipeline(mini, pseudo_config({**TINY, "saliency": "onnx"}), cache_dir)
    with pytest.raises(BenchError, match="unknown pseudo-label setting 'thresh'"):
        pseudo_config({"thresh": 0.2})
    with pytest.raises(BenchError, match="gate=maybe"):
        pseudo_config({"gate": "maybe"})


def test_real_datasets_without_a_pool_say_which_back_end_to_use():
    from bench.data.datasets import VocLayoutDataset, pool_dataset
    from pathlib import Path

    ds = VocLayoutDataset("pascal5i", Path("/nonexistent/VOC2012"), "SegmentationClassAug", {})
    with pytest.raises(BenchError, match="no disjoint pool.*cam=vgg16"):
        pool_dataset(ds)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_saliency_back_end_runs_a_user_model(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from torch import nn

    from pseudo_labels.onnx_saliency import OnnxSaliency
    from pseudo_labels.nets import as_batch

    net = nn.Sequential(nn.Conv2d(3, 1, 3, stride=2, padding=1), nn.Sigmoid()).eval()
    path = tmp_path / "sal.onnx"
    torch.onnx.export(net, torch.randn(1, 3, 32, 32), str(path), dynamo=False, input_names=["image"],
                      dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}})
    images = np.random.default_rng(0).integers(0, 255, (2, 20, 24, 3), dtype=np.uint8)
    got = OnnxSaliency(path).maps(images)
    with torch.no_grad():
        want = torch.nn.functional.interpolate(net(as_batch(images)), size=(20, 24), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)


# ---- generator, cache and fingerprint -------------------------------------------------------

def test_fingerprint_is_deterministic_and_tracks_every_setting(mini, cache_dir, tiny_cfg):
    a = build_pipeline(mini, tiny_cfg, cache_dir).fingerprint(mini)
    b = build_pipeline(mini, pseudo_config(TINY), cache_dir).fingerprint(mini)
    assert a == b and len(a) == 16
    for change in ({"threshold": 0.4}, {"saliency": "none"}, {"weighting": "softmax"}, {"gate": "soft"}, {"cam_epochs": 3}):
        other = build_pipeline(mini, pseudo_config({**TINY, **change}), cache_dir).fingerprint(mini)
        assert other != a, change
    assert changed_settings({"saliency": "none", "threshold": PseudoConfig().threshold, "gate": "soft"}) == {"saliency": "none", "gate": "soft"}


def test_pool_nets_are_keyed_by_their_weights_not_by_their_file(mini, tmp_path, tiny_cfg, cache_dir):
    """Two machines that train the same weights write files that differ in the training time the
    file's meta holds: the pseudo masks' key must be the same on both, and move when one weight does."""
    import shutil

    from bench.core.weights import load_weights
    from pseudo_labels.train import model_path, pool_dataset, save_model

    fp = build_pipeline(mini, tiny_cfg, cache_dir).fingerprint(mini)
    other = tmp_path / "other-machine"
    shutil.copytree(cache_dir / "pseudo" / "models", other / "pseudo" / "models")
    path = model_path(other, "cam", pool_dataset(mini), tiny_cfg)
    blob = load_weights(path, "CAM classifier", "")
    net = build_pipeline(mini, tiny_cfg, other).cam.net
    save_model(path, net, {**blob["meta"], "train_s": blob["meta"]["train_s"] + 7.3}, blob["meta"]["classes"])
    assert path.read_bytes() != (cache_dir / "pseudo" / "models" / path.name).read_bytes()
    assert build_pipeline(mini, tiny_cfg, other).fingerprint(mini) == fp
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] += 1e-3
    save_model(path, net, blob["meta"], blob["meta"]["classes"])
    assert build_pipeline(mini, tiny_cfg, other).fingerprint(mini) != fp


def test_generated_masks_hold_only_labelled_classes_and_are_cached(mini, cache_dir, tiny_cfg):
    from bench.data.datasets import image_labels
    from pseudo_labels.source import pseudo_masks_for

    root = generate_pseudo_masks(mini, tiny_cfg, cache_dir)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["n_images"] == len(mini.ids("train")) + len(mini.ids("val"))
    stamp = (root / "COMPLETE").stat().st_mtime_ns
    assert generate_pseudo_masks(mini, tiny_cfg, cache_dir) == root and (root / "COMPLETE").stat().st_mtime_ns == stamp
    source = pseudo_masks_for(mini, cache_dir, TINY)
    assert source.kind == "weak" and manifest["fingerprint"] in source.fingerprint()
    labels = image_labels(mini, "train", cache_dir)
    nonempty = 0
    for image_id in mini.ids("train")[:40]:
        mask = source.mask(image_id)
        assert mask.shape == mini.image(image_id).shape[:2]
        assert set(np.unique(mask)) - {0} <= set(labels[image_id])
        nonempty += bool(mask.any())
    assert nonempty > 20


def test_no_half_written_cache_when_interrupted(mini, cache_dir, monkeypatch):
    import pseudo_labels.generate as gen

    cfg = pseudo_config({**TINY, "threshold": 0.55})
    calls = {"n": 0}
    real = gen.save_palette_png

    def failing(mask, path):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        real(mask, path)

    monkeypatch.setattr(gen, "save_palette_png", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_pseudo_masks(mini, cfg, cache_dir)
    fp = build_pipeline(mini, cfg, cache_dir).fingerprint(mini)
    assert not gen.pseudo_root(cache_dir, mini, fp).exists()
    monkeypatch.setattr(gen, "save_palette_png", real)
    assert (generate_pseudo_masks(mini, cfg, cache_dir) / "COMPLETE").is_file()


# ---- weak mode end to end -------------------------------------------------------------------

class SupportReader:
    """A method that trains on masks and predicts from support masks (a pixel-colour prototype),
    so that a weak run exercises every mask path a real method uses."""

    name = "support-reader"

    def fit(self, train, config):
        rng = np.random.default_rng(0)
        for _ in range(3):
            train.sample_episode(rng, 1, 1)

    def predict(self, episode):
        preds = []
        for q in episode.query_images:
            dists = [np.abs(q.astype(float) - np.mean([im[m == j + 1].mean(0) if (m == j + 1).any() else np.zeros(3)
                                                        for im, m in zip(ims, ms)], 0)).sum(-1)
                     for j, (ims, ms) in enumerate(zip(episode.support_images, episode.support_masks))]
            preds.append((np.argmin(dists, 0) + 1).astype(np.uint8) * (np.min(dists, 0) < 120))
        return preds

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_weak_mode_reads_ground_truth_only_for_scoring_queries(mini, cache_dir, tmp_path, monkeypatch):
    import bench.harness.registry as registry
    from bench.data.datasets import VocLayoutDataset
    from bench.harness.episodes import load_or_sample_episodes
    from bench.harness.views import FitView
    from bench.harness.presets import get_preset
    from bench.core.records import load_records
    from bench.harness.runner import RunRequest, run
    from bench.data.stores import MaskFiles
    from pseudo_labels.source import PseudoMasks, pseudo_masks_for

    preset = get_preset("quick")
    episodes, _, _ = load_or_sample_episodes(cache_dir, preset, mini, 0, 1, 1, 0)  # the protocol's GT index, built first
    pseudo_root = pseudo_masks_for(mini, cache_dir, TINY).root
    FitView(mini, pseudo_masks_for(mini, cache_dir, TINY), preset, 0, cache_dir)
    gt_reads, pseudo_reads, store_reads = [], [], []
    gt_mask, pseudo_mask_, store_mask = VocLayoutDataset.mask, PseudoMasks.mask, MaskFiles.mask
    # the benchmark's reads only: the pool's GT (pretraining) is the method's to use
    monkeypatch.setattr(VocLayoutDataset, "mask", lambda self, i: (self.family != "pool" and gt_reads.append(i), gt_mask(self, i))[1])
    monkeypatch.setattr(PseudoMasks, "mask", lambda self, i: (pseudo_reads.append(i), pseudo_mask_(self, i))[1])
    # training masks come through the fit view's store: record which file each one was read from
    monkeypatch.setattr(MaskFiles, "mask", lambda self, i: (store_reads.append((i, self._paths[i][0])), store_mask(self, i))[1])
    monkeypatch.setitem(registry.METHODS, "support-reader", f"{__name__}:SupportReader")

    req = RunRequest(method="support-reader", mode="weak", dataset="openmoji5i-mini", folds=(0,), preset="quick",
                     pseudo=TINY, cache_dir=cache_dir, results_dir=tmp_path / "results")
    run(req, log=lambda *_: None)
    queries = {q for e in episodes for q in e.query_ids}
    supports = {s for e in episodes for way in e.support_ids for s in way}
    train_ids = set(mini.ids("train"))
    assert queries <= set(gt_reads) <= queries | supports  # scoring, and the small-object count of supports
    assert supports <= set(pseudo_reads)
    assert store_reads and {i for i, _ in store_reads} <= train_ids  # training read masks of training images ...
    assert all(pseudo_root in path.parents for _, path in store_reads)  # ... from the pseudo-mask folder
    (record,) = [r for _, r in load_records(tmp_path / "results")]
    assert record.mode == "weak" and record.annotation_fingerprint.startswith("pseudo:openmoji5i-mini:")
    assert record.pseudo == changed_settings(TINY) and 0 < record.miou < 100


def test_pseudo_cli_report_neighbours_and_table(mini, cache_dir, tmp_path, capsys):
    from bench.cli import main

    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    base = ["--cache-dir", str(cache_dir), "pseudo"]
    results = tmp_path / "results"
    assert main(base + ["report", "--dataset", "openmoji5i-mini", "--results-dir", str(results), *sets]) == 0
    out = capsys.readouterr().out
    assert "with saliency gate" in out and "all foreground" in out and "fold 3 mean" in out
    (record_path,) = list(results.glob("openmoji5i-mini/pseudo-labels/*.json"))
    record = json.loads(record_path.read_text())
    assert record_path.with_suffix(".png").stat().st_size > 10_000
    fg = record["miou"]["all_foreground"]
    assert 0 < fg < 60 and record["miou"]["gated"] != fg and record["miou"]["no_gate"] != record["miou"]["gated"]
    # the all-foreground IoU of a class is its GT pixel share over the images labelled with it
    from bench.data.datasets import image_labels

    inter = union = 0
    for split in ("train", "val"):
        for i, cs in image_labels(mini, split, cache_dir).items():
            if 8 in cs:
                gt = mini.mask(i)
                inter += int((gt == 8).sum())
                union += int((gt != 255).sum())
    assert record["class_iou"]["all_foreground"]["8"] == pytest.approx(100 * inter / union, abs=1e-3)

    assert main(["--cache-dir", str(cache_dir), "table", "--results-dir", str(results)]) == 0
    table = capsys.readouterr().out
    assert "pseudo-mask quality" in table and record["fingerprint"] in table
    assert f"{np.mean(record['fold_miou']['all_foreground']):.1f}" in table

    assert main(base + ["neighbours", "sheep", "--dataset", "openmoji5i-mini", "--top", "3", *sets]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sheep -> words sheep") and len(lines) == 4
    assert main(base + ["neighbours", "sheeep", "--dataset", "openmoji5i-mini", *sets]) == 2
    assert "unknown class 'sheeep'" in capsys.readouterr().err


def test_labelled_maps_per_image_equal_the_batch_maps_bit_for_bit():
    """Pseudo masks are made one image at a time (memory C x H x W, not a batch's N x C x H x W):
    the labelled classes' maps are bit for bit the rows of the batch's all-class maps."""
    import torch

    from pseudo_labels.generate import labelled_maps, low_class_maps

    g = torch.Generator().manual_seed(0)
    t_low = torch.rand(3, 7, 5, 6, generator=g)
    weights = np.random.default_rng(1).random((9, 7)).astype(np.float32)
    weights[4] = 0  # a class with no weight: its map stays 0
    full = class_maps(t_low, weights, (37, 41))
    low = low_class_maps(t_low, weights)
    for j, classes in enumerate([[1, 5, 9], [2], [3, 4, 5, 6, 7, 8]]):
        got = labelled_maps(low[j], classes, (37, 41))
        assert got.shape == (len(classes), 37, 41)
        assert torch.equal(got, full[j, [c - 1 for c in classes]])
    assert labelled_maps(low[0], [], (37, 41)).shape == (0, 37, 41)
    assert float(labelled_maps(low[0], [5], (37, 41)).abs().max()) == 0.0
