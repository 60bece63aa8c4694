"""The figures of ``anomalib_adapted_moe.viz`` draw what they claim: points, colours, matrix values, panels.

Pure tests use hand-made inputs with hand-checked numbers; the ``slow`` ones use a tiny
model trained once (like ``tests/integration/test_integration.py``) and check the computed numbers
against the model's own forward.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_IMAGE_SIZE, tiny_adapted_moe, tiny_synthetic_datamodule
from matplotlib.colors import to_hex
from PIL import Image

from anomalib_adapted_moe.viz import (
    gaussian_distance,
    mean_distances,
    model_map,
    per_expert_maps,
    plot_anomaly_overlay,
    plot_per_expert_maps,
    plot_routing_embeddings,
    plot_routing_matrix,
    plot_tta_shift,
    routing_embeddings,
    routing_matrix,
    routing_probabilities,
    tta_shift,
)
from anomalib_adapted_moe.viz.style import palette

IMAGE_SIZE = TINY_IMAGE_SIZE


def distinct_colours(collection) -> set[str]:
    return {to_hex(colour) for colour in collection.get_facecolors()}


# ---------------------------------------------------------------- pure functions, hand-made inputs


def test_routing_matrix_is_the_mean_probability_per_true_subclass_seen_rows_first() -> None:
    names = ["u", "a", "b", "a"]
    probabilities = np.array([[0.6, 0.4], [0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    matrix, rows = routing_matrix(names, probabilities, ["a", "b"])
    assert rows == ["a", "b", "u"]  # seen (in expert order), then unseen
    np.testing.assert_allclose(matrix, [[0.8, 0.2], [0.2, 0.8], [0.6, 0.4]])
    # rows follow the expert order, not the alphabet; an explicit `seen` wins
    matrix, rows = routing_matrix(names, probabilities, ["b", "a"], seen=["a", "b"])
    assert rows == ["b", "a", "u"]
    np.testing.assert_allclose(matrix[1], [0.8, 0.2])


def test_routing_matrix_rejects_probabilities_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="probabilities must be"):
        routing_matrix(["a", "b"], np.ones((2, 3)) / 3, ["a", "b"])


def test_plot_routing_matrix_shows_the_matrix_its_labels_and_the_values() -> None:
    matrix = np.array([[0.8, 0.2], [0.25, 0.75], [0.6, 0.4]])
    figure = plot_routing_matrix(matrix, ["a", "b", "u"], ["a", "b"])
    ax = figure.axes[0]
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), matrix)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "u"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert [t.get_text() for t in ax.texts] == ["0.80", "0.20", "0.25", "0.75", "0.60", "0.40"]
    colours = [to_hex(t.get_color()) for t in ax.get_yticklabels()]
    assert colours[0] == colours[1] != colours[2]  # the unseen row is told apart
    assert len(ax.patches) == 2  # the own-expert cell of each seen row is outlined
    assert "routing probability" in ax.get_title()
    assert len(figure.axes) == 2  # heatmap and colour bar


def test_plot_routing_embeddings_draws_every_point_in_its_subclass_group() -> None:
    rng = np.random.default_rng(0)
    axis = np.eye(4)
    embeddings = np.concatenate(
        [
            axis[0] + 0.05 * rng.standard_normal((5, 4)),
            -axis[0] + 0.05 * rng.standard_normal((4, 4)),
            axis[1] + 0.05 * rng.standard_normal((3, 4)),
        ]
    )
    names = ["a"] * 5 + ["b"] * 4 + ["u"] * 3
    centers = np.stack([axis[0], -axis[0]])
    figure = plot_routing_embeddings(embeddings, names, centers, ["a", "b"])
    ax = figure.axes[0]
    assert [len(c.get_offsets()) for c in ax.collections] == [5, 4, 3, 2]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "u (unseen)", "expert centres"]
    groups = [distinct_colours(c) for c in ax.collections[:3]]
    assert all(len(group) == 1 for group in groups) and len(set.union(*groups)) == 3
    assert groups[0] == {palette(3)[0]} and groups[1] == {palette(3)[1]}  # a seen subclass wears its expert's colour
    assert {to_hex(c) for c in ax.collections[3].get_edgecolors()} == {"#000000"}  # centres are black stars
    assert [t.get_text() for t in ax.texts] == ["a", "b"]  # ... labelled with their expert
    # PC 1 separates the two seen clusters, and each centre sits with its own cluster
    a, b, _, stars = (np.asarray(c.get_offsets()) for c in ax.collections)
    assert np.sign(a[:, 0]).tolist() == [np.sign(stars[0, 0])] * 5
    assert np.sign(b[:, 0]).tolist() == [np.sign(stars[1, 0])] * 4
    assert np.sign(stars[0, 0]) != np.sign(stars[1, 0])
    assert "PCA" in ax.get_title()


def test_gaussian_distance_is_the_w2_distance_of_diagonal_gaussians() -> None:
    distance = gaussian_distance(
        torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([3.0, 0.0]), torch.tensor([1.0, 5.0])
    )
    assert float(distance) == pytest.approx(5.0)  # sqrt(3^2 + 4^2)


def hand_made_shift() -> dict:
    rng = np.random.default_rng(1)
    channels, per_image = 6, 4
    names = ["a", "a", "b", "u", "u"]
    return {
        "distance_before": np.array([1.0, 3.0, 2.0, 8.0, 6.0]),
        "distance_after": np.array([0.5, 0.5, 0.25, 1.0, 2.0]),
        "expert_index": np.array([0, 0, 1, 0, 0]),
        "subclass_names": names,
        "seen": ["a", "b"],
        "labels": np.zeros(5, dtype=int),
        "patches_before": rng.standard_normal((5, per_image, channels)),
        "patches_after": rng.standard_normal((5, per_image, channels)),
        "reference_patches": rng.standard_normal((30, channels)),
        "reference_expert": np.array([0] * 18 + [1] * 12),
        "expert_names": ["a", "b"],
    }


def test_mean_distances_per_subclass_seen_first() -> None:
    names, before, after = mean_distances(hand_made_shift())
    assert names == ["a", "b", "u"]
    np.testing.assert_allclose(before, [2.0, 2.0, 7.0])
    np.testing.assert_allclose(after, [0.5, 0.25, 1.5])


def test_plot_tta_shift_bars_and_patch_panels() -> None:
    figure = plot_tta_shift(hand_made_shift())
    bars, panel = figure.axes
    assert [t.get_text() for t in bars.get_xticklabels()] == ["a", "b", "u"]
    np.testing.assert_allclose([r.get_height() for r in bars.containers[0]], [2.0, 2.0, 7.0])  # before TTA
    np.testing.assert_allclose([r.get_height() for r in bars.containers[1]], [0.5, 0.25, 1.5])  # after TTA
    assert [t.get_text() for t in bars.get_legend().get_texts()] == ["before TTA", "after TTA"]
    # one panel for the unseen subclass: expert a's and b's training patches, then u's 2 images x 4 patches
    assert [len(c.get_offsets()) for c in panel.collections] == [18, 12, 8, 8, 1, 1]
    names = np.array(hand_made_shift()["subclass_names"])
    member = names == "u"
    means = [np.asarray(c.get_offsets())[0] for c in panel.collections[4:]]
    # the two large markers are the means of u's projected patches, before then after TTA
    before_xy, after_xy = (np.asarray(c.get_offsets()) for c in panel.collections[2:4])
    np.testing.assert_allclose(means, [before_xy.mean(axis=0), after_xy.mean(axis=0)])
    assert member.sum() * 4 == len(before_xy)
    assert len(panel.texts) == 1  # the arrow from one to the other
    assert panel.get_title().startswith("u\nmostly routed to a")
    assert "before TTA" in [t.get_text() for t in figure.legends[0].get_texts()]


def test_plot_tta_shift_without_reference_patches_has_only_the_bars() -> None:
    shift = hand_made_shift()
    shift["reference_patches"] = np.zeros((0, 6))
    shift["reference_expert"] = np.zeros(0, dtype=int)
    assert len(plot_tta_shift(shift).axes) == 1


def test_plot_per_expert_maps_panels_share_one_scale() -> None:
    maps = np.stack([np.full((8, 8), value) for value in (0.0, 1.0, 3.0)])
    maps[2, 0, 0] = 4.0
    mask = np.zeros((16, 16))
    mask[4:8, 4:8] = 1
    figure = plot_per_expert_maps(
        np.zeros((3, 16, 16)),
        maps,
        ["e0", "e1", "e2"],
        gt_mask=mask,
        probabilities=[0.2, 0.7, 0.1],
        mixed_map=np.full((8, 8), 0.5),
        title="t",
    )
    *panels, colour_bar = figure.axes
    assert len(panels) == 3 + 2  # input, model output, one per expert
    titles = [ax.get_title() for ax in panels]
    assert titles[0].startswith("input") and titles[1].startswith("model output")
    assert titles[2:] == ["e0\nrouting p = 0.20", "e1\nrouting p = 0.70", "e2\nrouting p = 0.10"]
    assert panels[3].title.get_fontweight() == "bold"  # the top-routed expert
    np.testing.assert_allclose(np.asarray(panels[4].images[0].get_array()), maps[2])
    assert {ax.images[0].get_clim() for ax in panels[1:]} == {(0.0, 4.0)}
    assert all(ax.collections for ax in panels)  # the defect is outlined everywhere
    assert figure.get_suptitle() == "t"
    assert colour_bar.get_ylabel().startswith("anomaly score")


def test_plot_per_expert_maps_rejects_a_count_mismatch() -> None:
    with pytest.raises(ValueError, match="experts"):
        plot_per_expert_maps(np.zeros((3, 8, 8)), np.zeros((2, 8, 8)), ["e0", "e1", "e2"])


def test_plot_anomaly_overlay_accepts_inferencer_shapes() -> None:
    image = np.random.default_rng(0).random((1, 3, 32, 32)).astype(np.float32)  # (1, 3, H, W) like OpenVINO's
    heat = np.zeros((1, 32, 32), np.float32)
    heat[0, 10:20, 10:20] = 1
    figure = plot_anomaly_overlay(image, heat, gt_mask=heat[0] > 0, pred_mask=heat > 0, score=0.9, title="x")
    left, right, _ = figure.axes
    np.testing.assert_allclose(right.images[1].get_array(), heat[0])
    np.testing.assert_allclose(left.images[0].get_array(), image[0].transpose(1, 2, 0), atol=1e-6)
    assert left.collections and right.collections  # ground truth and prediction outlined
    assert "score 0.900" in right.get_title()


# ---------------------------------------------------------------- a tiny trained model


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    from anomalib.engine import Engine

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("viz")
    datamodule = tiny_synthetic_datamodule(root / "data")
    model = tiny_adapted_moe(epochs=2)
    engine = Engine(
        default_root_dir=root / "results",
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    engine.fit(model=model, datamodule=datamodule)
    model.eval()
    return model, datamodule


@pytest.mark.slow
def test_routing_embeddings_are_the_routers_own(fitted) -> None:
    model, datamodule = fitted
    routing = routing_embeddings(model, datamodule.test_dataloader())
    samples = datamodule.test_data.samples
    assert routing["subclass_names"] == list(samples.subclass)
    assert routing["subclass_ids"].tolist() == list(samples.subclass_id)
    assert routing["embeddings"].shape == (len(samples), 16)
    assert routing["probabilities"].shape == (len(samples), 2) == (len(samples), len(routing["centers"]))
    np.testing.assert_allclose(np.linalg.norm(routing["embeddings"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(routing["probabilities"].sum(axis=1), 1.0, atol=1e-5)
    assert routing["seen"] == sorted(datamodule.train_subclasses)
    assert routing["expert_names"] == model.expert_names
    # the probabilities route like the model: its top-1 expert is their argmax
    images = next(iter(datamodule.test_dataloader())).image
    with torch.no_grad():
        inner = model.model
        top = inner.route(inner.adapt(inner.patch_features(model.pre_processor.transform(images))))[0][:, 0]
    np.testing.assert_allclose(routing_probabilities(model, images), routing["probabilities"][: len(images)], atol=1e-6)
    assert top.tolist() == routing["probabilities"][: len(images)].argmax(axis=1).tolist()
    assert routing_embeddings(model, datamodule.test_dataloader(), max_images=3)["embeddings"].shape[0] == 3


@pytest.mark.slow
def test_routing_figures_of_the_model_count_every_test_image(fitted) -> None:
    model, datamodule = fitted
    routing = routing_embeddings(model, datamodule.test_dataloader())
    seen = datamodule.train_subclasses
    figure = plot_routing_embeddings(
        routing["embeddings"], routing["subclass_names"], routing["centers"], routing["expert_names"], seen
    )
    counts = datamodule.test_data.samples.subclass.value_counts()
    unseen = sorted(set(counts.index) - set(seen))
    ax = figure.axes[0]
    assert [len(c.get_offsets()) for c in ax.collections] == [counts[n] for n in [*seen, *unseen]] + [2]
    matrix, rows = routing_matrix(routing["subclass_names"], routing["probabilities"], routing["expert_names"], seen)
    assert rows == [*seen, *unseen]
    heat = plot_routing_matrix(matrix, rows, routing["expert_names"], seen).axes[0]
    np.testing.assert_allclose(np.asarray(heat.images[0].get_array()), matrix)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_tta_brings_every_image_closer_to_its_expert_and_off_changes_nothing(fitted) -> None:
    model, datamodule = fitted
    shift = tta_shift(model, datamodule.test_dataloader(), reference=datamodule.train_dataloader())
    n = len(datamodule.test_data)
    assert shift["distance_before"].shape == shift["distance_after"].shape == (n,)
    assert (shift["distance_after"] < shift["distance_before"]).all()
    assert shift["patches_before"].shape == shift["patches_after"].shape == (n, 16, 32)
    assert shift["reference_patches"].shape == (len(datamodule.train_data) * 16, 32)
    assert sorted(set(shift["reference_expert"].tolist())) == [0, 1]
    model.model.tta = False
    try:
        off = tta_shift(model, datamodule.test_dataloader(), max_images=4)
    finally:
        model.model.tta = True
    np.testing.assert_allclose(off["distance_after"], off["distance_before"], rtol=1e-5)
    np.testing.assert_allclose(off["patches_after"], off["patches_before"])
    assert len(plot_tta_shift(shift).axes) == 2  # bars + one unseen subclass


@pytest.mark.slow
def test_per_expert_maps_mix_into_the_models_map(fitted) -> None:
    model, datamodule = fitted
    item = datamodule.test_data[int(np.argmax(datamodule.test_data.samples.label_index))]
    maps = per_expert_maps(model, item.image)
    assert maps.shape == (2, IMAGE_SIZE, IMAGE_SIZE)
    assert not torch.allclose(maps[0], maps[1])
    mixed, score = model_map(model, item.image)
    probabilities = torch.as_tensor(routing_probabilities(model, item.image)[0])
    # top_k (4) covers both experts, so the model's map is the probability-weighted sum of theirs
    torch.testing.assert_close((probabilities[:, None, None] * maps).sum(dim=0), mixed, atol=1e-5, rtol=1e-5)
    # score = max patch score; the map's upsampling and blur average patch scores, so they never exceed it
    assert float(mixed.max()) <= score + 1e-5
    figure = plot_per_expert_maps(
        item.image, maps, model.expert_names, gt_mask=item.gt_mask, probabilities=probabilities, mixed_map=mixed
    )
    assert len(figure.axes) == 2 + 2 + 1
    assert [ax.get_title().split("\n")[0] for ax in figure.axes[2:4]] == model.expert_names


@pytest.mark.slow
def test_viz_leaves_the_model_in_its_mode(fitted) -> None:
    model, datamodule = fitted
    model.model.train()
    try:
        per_expert_maps(model, datamodule.test_data[0].image)
        assert model.model.training and model.model.experts.training
    finally:
        model.model.eval()


@pytest.mark.slow
def test_write_figures_makes_four_small_pngs(fitted, tmp_path: Path) -> None:
    from anomalib_adapted_moe.viz.make_figures import FIGURES, defect_example, write_figures

    model, datamodule = fitted
    index = defect_example(datamodule)
    assert datamodule.test_data.samples.label_index.iloc[index] == 1
    assert datamodule.test_data.samples.subclass.iloc[index] not in datamodule.train_subclasses
    paths = write_figures(model, datamodule, tmp_path)
    assert sorted(paths) == sorted(FIGURES)
    for path in paths.values():
        assert path.stat().st_size < 500_000
        with Image.open(path) as image:
            assert image.width > 300 and image.height > 200
