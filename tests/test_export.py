"""SavedModel export (gmdgm_tf.export) and the TensorFlow-only predict CLI.

One tiny digits run is trained and exported once for the module; the export is then
loaded in a separate Python process that never imports gmdgm_tf or TFP, and its outputs
are compared with the Keras model's.
"""

import ast
import csv
import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from gmdgm_tf import data, experiment, export, machine, predict, rundir
from conftest import REPO, absolute_paths, plain_digits

N = 16
SAMPLE = dict(slot=3, num=5, seed=(7, 11))

CLIENT = r'''
import sys
import numpy as np
import tensorflow as tf

export_dir, inputs, outputs = sys.argv[1:]
m = tf.saved_model.load(export_dir)
x = np.load(inputs)
images = {"": x["float"], "_uint8": x["uint8"]}
out = {}
for key, fn in m.signatures.items():
    if key == "sample":
        result = fn(slot=tf.constant(int(x["slot"])), num=tf.constant(int(x["num"])),
                    seed=tf.constant(x["seed"]))
    else:
        result = fn(images=tf.constant(images["_uint8" if key.endswith("_uint8") else ""]))
    out.update({f"{key}/{k}": v.numpy() for k, v in result.items()})
# The Python-callable functions take the rank-4 forms too.
out.update({f"classify_rank4/{k}": v.numpy()
            for k, v in m.classify(x["float"][..., None]).items()})
out.update({f"reconstruct_rank4_uint8/{k}": v.numpy()
            for k, v in m.reconstruct(x["uint8"][..., None]).items()})
forbidden = sorted(name for name in sys.modules
                   if name.split(".")[0] in ("gmdgm_tf", "tensorflow_probability"))
if forbidden:
    sys.exit(f"the client imported {forbidden[:5]}")
np.savez(outputs, **out)
'''


def run_python(args, cwd):
    proc = subprocess.run([sys.executable] + args, cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{args[:2]} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def trained_export(root, model="gmdgm"):
    """A smoke digits run of `model`, trained and exported under root -> its namespace."""
    config = plain_digits()
    config.model.name = model
    workdir = str(root / "run")
    experiment.train_and_evaluate(config, workdir)
    export_dir = str(root / "export")
    metadata = export.export_run(workdir, export_dir)
    finished = rundir.load_run(workdir)
    model, meta, metrics = finished.model, finished.meta, finished.metrics
    raw = data.load_raw(config.data)
    images = raw.test_x[:N]
    return types.SimpleNamespace(
        root=root, workdir=workdir, export_dir=export_dir, metadata=metadata, model=model,
        meta=meta, metrics=metrics, raw=raw, images=images,
        images_uint8=np.round(images * 16).astype(np.uint8),
        loaded=tf.saved_model.load(export_dir))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_export(tmp_path_factory.mktemp("export"))


def reference(run, images):
    """What every signature should return, computed from the Keras model itself."""
    model, mask = run.model, np.asarray(run.meta.pixel_mask, bool)
    shape = tuple(run.meta.image_shape)
    x = images.reshape(len(images), -1)[:, mask]
    slot_probs = model(x).numpy()
    slot = slot_probs.argmax(-1)
    slot_map = np.asarray(run.metrics["heldout"]["slot_map"])
    class_mass = np.zeros((len(x), len(run.meta.class_names)))
    for s, c in enumerate(slot_map):
        if c >= 0:
            class_mass[:, c] += slot_probs[:, s]
    q_z = model.q_z_given_xy(x, tf.one_hot(slot, model.num_slots)[:, None, :])
    sample = model.sample(SAMPLE["slot"], SAMPLE["num"], seed=SAMPLE["seed"]).numpy()
    return {
        "slot_probs": slot_probs, "slot": slot,
        "probs": class_mass / class_mass.sum(1, keepdims=True),
        "slot_class": slot_map[slot],
        "z_mean": q_z.distribution.loc.numpy()[:, 0],
        "z_scale": q_z.distribution.scale.numpy()[:, 0],
        "reconstruction": data.unfilter(model.reconstruct(x).numpy(), mask, shape),
        "sample": data.unfilter(sample, mask, shape),
    }


def assert_argmax(probs, got, margin=1e-5):
    """got == argmax(probs) wherever the top two entries differ by more than margin."""
    top2 = np.sort(probs, -1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > margin
    np.testing.assert_array_equal(np.asarray(got)[clear], probs.argmax(-1)[clear])


# ------------------------------------------------------------------------ the export


def test_the_predict_command_accepts_the_dtypes_the_export_serves():
    """predict.py stays free of TensorFlow, so it names the dtypes itself: the same ones."""
    from gmdgm_tf import export_inputs  # pylint: disable=import-outside-toplevel
    assert sorted(predict.INTEGER_DTYPES + predict.FLOAT_DTYPES) == sorted(
        d.name for d in export_inputs.INPUT_DTYPES)


def test_signatures_and_metadata(run):
    signatures = run.loaded.signatures
    assert set(signatures) == set(export.SIGNATURE_KEYS)
    outputs = {"classify": {"probs", "label", "slot_probs", "slot", "slot_class"},
               "cluster": {"slot_probs", "slot"}, "embed": {"z_mean", "z_scale", "slot"},
               "reconstruct": {"reconstruction", "slot"}}
    for name, keys in outputs.items():
        for key, dtype in ((name, tf.float32), (f"{name}_uint8", tf.uint8)):
            fn = signatures[key]
            assert set(fn.structured_outputs) == keys
            assert fn.structured_input_signature[1] == {
                "images": tf.TensorSpec([None, 8, 8], dtype, name="images")}
    assert set(signatures["serving_default"].structured_outputs) == outputs["classify"]
    assert set(signatures["sample"].structured_input_signature[1]) == {"slot", "num", "seed"}
    assert signatures["sample"].structured_outputs["images"].shape.as_list() == [None, 8, 8]
    assert signatures["classify"].structured_outputs["probs"].shape.as_list() == [None, 10]
    assert signatures["classify"].structured_outputs["slot_probs"].shape.as_list() == [None, 15]

    with open(os.path.join(run.export_dir, export.METADATA_FILE), encoding="utf-8") as f:
        meta = json.load(f)
    assert meta == json.loads(json.dumps(run.metadata))
    assert meta["dataset"] == "digits" and meta["uint8_divisor"] == 16
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert meta["slot_map"] == run.metrics["heldout"]["slot_map"]
    assert meta["slot_map_protocol"] == "heldout"
    assert meta["metrics"]["heldout"]["accuracy"] == run.metrics["heldout"]["accuracy"]
    assert meta["tensorflow_version"] == tf.__version__ and meta["package_version"]
    assert set(meta["signatures"]) == set(export.SIGNATURE_KEYS)
    np.testing.assert_array_equal(run.loaded.slot_to_class.numpy(), meta["slot_map"])
    assert run.loaded.uint8_divisor.numpy() == 16.0
    assert not [n for n in os.listdir(run.root) if n.startswith(".")]  # no temporary left
    # the run's name and the code's commit, no path of this machine
    assert meta["run"] == "run" and meta["commit"] == machine.code_commit()
    with open(os.path.join(run.export_dir, export.METADATA_FILE), encoding="utf-8") as f:
        text = f.read()
    assert not absolute_paths(text) and str(run.root) not in text


def test_metadata_lists_every_signatures_inputs_and_outputs(run):
    """gmdgm_export.json: name, dtype and shape of each signature's inputs and outputs, as
    the loaded SavedModel has them."""
    def spec(t):
        return [t.dtype.name, t.shape.as_list()]
    described = run.metadata["signatures"]
    assert described["classify"]["inputs"] == {"images": ["float32", [None, 8, 8]]}
    assert described["embed_uint8"]["inputs"] == {"images": ["uint8", [None, 8, 8]]}
    assert described["sample"]["inputs"] == {
        "slot": ["int32", []], "num": ["int32", []], "seed": ["int32", [2]]}
    assert described["classify"]["outputs"]["probs"] == ["float32", [None, 10]]
    for key, fn in run.loaded.signatures.items():
        assert described[key]["inputs"] == {
            k: spec(v) for k, v in fn.structured_input_signature[1].items()}, key
        assert described[key]["outputs"] == {
            k: spec(v) for k, v in fn.structured_outputs.items()}, key


def test_saved_model_holds_only_the_variables_the_graphs_read(run):
    """No Keras objects in the SavedModel: its variables are the module's own and the
    network weights the functions read (no metric trackers, RNG state or optimizer)."""
    saved = [name for name, _ in tf.train.list_variables(
        os.path.join(run.export_dir, "variables", "variables"))]
    roots = {name.split("/")[0] for name in saved if not name.startswith("_CHECKPOINTABLE")}
    assert roots == {"image_shape", "pixel_mask", "slot_to_class", "uint8_divisor",
                     "num_classes", "model_variables"}

    def shapes(variables):
        return sorted(tuple(v.shape) for v in variables)
    # The four image functions and sample read every trainable weight, and nothing else.
    assert shapes(run.loaded.model_variables) == shapes(run.model.trainable_variables)
    assert len(run.loaded.model_variables) < len(run.model.variables)


def test_inference_module_refuses_inconsistent_arguments(run):
    model, meta = run.model, run.meta
    slot_map = run.metrics["heldout"]["slot_map"]
    good = dict(model=model, image_shape=meta.image_shape, pixel_mask=meta.pixel_mask,
                slot_map=slot_map, num_classes=10, divisor=16.0)
    cases = [
        (dict(image_shape=(7, 7)), "pixel mask has 64 entries, images have 49"),
        (dict(pixel_mask=np.arange(64) < meta.dim - 1),
         f"pixel mask keeps {meta.dim - 1} pixels but the model takes {meta.dim}"),
        (dict(slot_map=slot_map[:-1]), "slot map has 14 entries, the model has 15"),
        (dict(slot_map=[10] + slot_map[1:]), "names classes outside 0..9"),
        (dict(slot_map=[-1] * 15), "names no slot"),
    ]
    for change, message in cases:
        with pytest.raises(export.ExportError, match=message):
            export.InferenceModule(**{**good, **change})


def client_outputs(run, tmp_path):
    """Every signature's outputs on run.images and SAMPLE, from a process that loads the
    export without gmdgm_tf or TFP (CLIENT) -> {"<signature>/<output>": array}."""
    np.savez(tmp_path / "in.npz", float=run.images, uint8=run.images_uint8,
             slot=SAMPLE["slot"], num=SAMPLE["num"], seed=np.array(SAMPLE["seed"], np.int32))
    (tmp_path / "client.py").write_text(CLIENT)
    run_python([str(tmp_path / "client.py"), run.export_dir, str(tmp_path / "in.npz"),
                str(tmp_path / "out.npz")], cwd=tmp_path)
    return dict(np.load(tmp_path / "out.npz"))


def test_separate_process_matches_model(run, tmp_path):
    """Every signature, run in a process without gmdgm_tf or TFP, against the Keras model."""
    got = client_outputs(run, tmp_path)
    ref = reference(run, run.images)
    tol = dict(rtol=1e-5, atol=1e-5)
    for prefix in ("classify", "classify_uint8", "serving_default", "classify_rank4"):
        np.testing.assert_allclose(got[f"{prefix}/slot_probs"], ref["slot_probs"], **tol)
        np.testing.assert_allclose(got[f"{prefix}/probs"], ref["probs"], **tol)
        assert_argmax(ref["slot_probs"], got[f"{prefix}/slot"])
        assert_argmax(ref["probs"], got[f"{prefix}/label"])
        np.testing.assert_array_equal(
            got[f"{prefix}/slot_class"],
            np.asarray(run.metrics["heldout"]["slot_map"])[got[f"{prefix}/slot"]])
    for prefix in ("cluster", "cluster_uint8"):
        np.testing.assert_allclose(got[f"{prefix}/slot_probs"], ref["slot_probs"], **tol)
        np.testing.assert_array_equal(got[f"{prefix}/slot"], got["classify/slot"])
    # embed / reconstruct are compared at the slot the export picked (== ref where clear).
    same = got["classify/slot"] == ref["slot"]
    assert same.mean() > 0.5
    for prefix in ("embed", "embed_uint8"):
        np.testing.assert_allclose(got[f"{prefix}/z_mean"][same], ref["z_mean"][same], **tol)
        np.testing.assert_allclose(got[f"{prefix}/z_scale"][same], ref["z_scale"][same], **tol)
    for prefix in ("reconstruct", "reconstruct_uint8", "reconstruct_rank4_uint8"):
        assert got[f"{prefix}/reconstruction"].shape == (N, 8, 8)
        np.testing.assert_allclose(got[f"{prefix}/reconstruction"][same],
                                   ref["reconstruction"][same], **tol)
    assert got["sample/images"].shape == (SAMPLE["num"], 8, 8)
    np.testing.assert_allclose(got["sample/images"], ref["sample"], **tol)


def test_batch_size_dtype_and_rank_give_the_same_predictions(run):
    m, x, x8 = run.loaded, run.images, run.images_uint8
    whole = m.classify(x)
    forms = [m.classify(x8), m.classify(x[..., None]), m.classify(x8[..., None]),
             m.signatures["classify_uint8"](images=x8), m.classify(x.reshape(N, 64)),
             m.classify(x8.reshape(N, 64).astype(np.int64))]
    singles = [m.classify(x[i:i + 1]) for i in range(N)]
    forms.append({k: tf.concat([s[k] for s in singles], 0) for k in whole})
    for form in forms:
        np.testing.assert_allclose(form["probs"], whole["probs"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(form["slot_probs"], whole["slot_probs"], rtol=1e-5,
                                   atol=1e-6)
        assert_argmax(whole["probs"].numpy(), form["label"])
        assert_argmax(whole["slot_probs"].numpy(), form["slot"])
    # Deterministic signatures are deterministic; sample is a pure function of its seed.
    for name in ("classify", "embed", "reconstruct"):
        a, b = getattr(m, name)(x), getattr(m, name)(x)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    s1, s2, s3 = (m.sample(3, 4, seed)["images"] for seed in ([1, 2], [1, 2], [1, 3]))
    np.testing.assert_array_equal(s1, s2)
    assert not np.allclose(s1, s3)
    assert m.sample(0, 0, [1, 2])["images"].shape == (0, 8, 8)
    assert m.classify(x[:0])["probs"].shape == (0, 10)


def test_export_reproduces_the_heldout_accuracy(run):
    """Raw test images through the export score what metrics.json says."""
    result = run.loaded.classify(run.raw.test_x)
    accuracy = np.mean(result["slot_class"].numpy() == run.raw.test_y)
    assert abs(accuracy - run.metrics["heldout"]["accuracy"]) <= 1 / len(run.raw.test_y)


def test_float64_float16_int32_int64_give_the_float32_predictions(run):
    """numpy's default float64, float16 and int32/int64 in the raw scale are accepted by
    every function (digits pixels k/16 are exact in each), rank 3 or 4."""
    x, x8 = run.images, run.images_uint8
    forms = {"float64": x.astype(np.float64), "float16": x.astype(np.float16)[..., None],
             "int32": x8.astype(np.int32)[..., None], "int64": x8.astype(np.int64)}
    for name in export.IMAGE_FUNCTIONS:
        function = getattr(run.loaded, name)
        want = function(x)
        for form, images in forms.items():
            got = function(images)
            for k in want:
                np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7,
                                           err_msg=f"{name} {form} {k}")


def test_empty_batches_give_empty_outputs_in_every_form(run):
    z = run.model.z_dim
    shapes = {"classify": {"probs": (0, 10), "label": (0,), "slot_probs": (0, 15),
                           "slot": (0,), "slot_class": (0,)},
              "cluster": {"slot_probs": (0, 15), "slot": (0,)},
              "embed": {"z_mean": (0, z), "z_scale": (0, z), "slot": (0,)},
              "reconstruct": {"reconstruction": (0, 8, 8), "slot": (0,)}}
    for images in (np.zeros((0, 8, 8)), np.zeros((0, 8, 8, 1), np.uint8),
                   np.zeros((0, 8, 8), np.int32), np.zeros((0, 8, 8, 1), np.float16)):
        for name, want in shapes.items():
            got = getattr(run.loaded, name)(images)
            assert {k: tuple(v.shape) for k, v in got.items()} == want, (name, images.dtype)


def _with(value, where, dtype, fill=0.5):
    images = np.full((2, 8, 8), fill, dtype)
    images[where] = value
    return images


BATCH = "images must be a batch [N, 8, 8], [N, 8, 8, 1] or [N, 64]"
FLAT = "flat images [N, 64] must have 8 x 8 = 64 pixels like the training images"
# case: (images, the message; TF shows it as the first line "assertion failed: [<message>]")
BAD_IMAGES = {
    "one_image_rank2": (np.zeros((8, 8), np.float32), f"{FLAT} (got shape [8, 8])"),
    "flat_63": (np.zeros((2, 63), np.float64), f"{FLAT} (got shape [2, 63])"),
    "rank1": (np.zeros((64,), np.uint8), f"{BATCH} (got shape [64])"),
    "rank5": (np.zeros((2, 8, 8, 1, 1), np.uint8), f"{BATCH} (got shape [2, 8, 8, 1, 1])"),
    "scalar": (np.float32(0.5), f"{BATCH} (got shape [])"),
    "size": (np.zeros((2, 7, 7), np.float32),
             "images must be 8 x 8 pixels like the training images (got shape [2, 7, 7])"),
    "size_empty_int64": (np.zeros((0, 8, 9), np.int64),
                         "images must be 8 x 8 pixels like the training images "
                         "(got shape [0, 8, 9])"),
    "3_channels": (np.zeros((2, 8, 8, 3), np.float32),
                   "images must have 1 channel (grayscale) (got shape [2, 8, 8, 3])"),
    "3_channels_nan": (np.full((1, 8, 8, 3), np.nan, np.float32),  # shape comes first
                       "images must have 1 channel (grayscale) (got shape [1, 8, 8, 3])"),
    "3_channels_uint8_255": (np.full((1, 8, 8, 3), 255, np.uint8),
                             "images must have 1 channel (grayscale) (got shape [1, 8, 8, 3])"),
    "nan": (np.full((2, 8, 8), np.nan, np.float32), "images contain 128 NaN or Inf values"),
    "inf_float64": (_with(np.inf, (1, 2), np.float64), "images contain 8 NaN or Inf values"),
    "nan_float16": (_with(np.nan, (0, 0, 0), np.float16), "images contain 1 NaN or Inf values"),
    "above_1": (_with(1.5, (0, 3), np.float32),
                "float32 images must be in [0, 1] (got min 0.5, max 1.5)"),
    "below_0_float64": (_with(-0.25, (1, 1, 1), np.float64),
                        "float64 images must be in [0, 1] (got min -0.25, max 0.5)"),
    "above_1_float16": (_with(2, (1,), np.float16),
                        "float16 images must be in [0, 1] (got min 0.5, max 2)"),
    "beyond_float32": (_with(1e300, (0,), np.float64),  # Inf as float32, but not NaN/Inf
                       "float64 images must be in [0, 1] (got min 0.5, max 1e+300)"),
    "uint8_above_16": (_with(17, (0,), np.uint8, fill=3),
                       "uint8 images must be in 0..16 for this model (got min 3, max 17)"),
    "int32_negative": (_with(-1, (0,), np.int32, fill=3),
                       "int32 images must be in 0..16 for this model (got min -1, max 3)"),
    "int64_above_16": (_with(255, (1,), np.int64, fill=16),
                       "int64 images must be in 0..16 for this model (got min 16, max 255)"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_images_get_one_clear_message(run, case):
    images, message = BAD_IMAGES[case]
    for name in export.IMAGE_FUNCTIONS:
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            getattr(run.loaded, name)(images)
        lines = str(info.value).splitlines()
        assert lines[0] == "Graph execution error:"
        assert next(line for line in lines if line.startswith("assertion failed")) == (
            f"assertion failed: [{message}]"), name


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint16, np.uint32, bool])
def test_dtypes_not_accepted_still_match_no_function(run, dtype):
    """What remains TF's own error: dtypes no function is traced for (a 16-bit scale
    would be read as the raw 0..16 one)."""
    with pytest.raises(ValueError, match="Could not find matching concrete function"):
        run.loaded.classify(np.zeros((2, 8, 8), dtype))


def test_bad_signature_and_sample_inputs_are_rejected(run):
    with pytest.raises(TypeError, match="Can not cast TensorSpec"):
        run.loaded.signatures["classify"](images=np.zeros((2, 7, 7), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"assertion failed: \[uint8 images must be in 0\.\.16"):
        run.loaded.signatures["classify_uint8"](images=np.full((2, 8, 8), 17, np.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="slot must be in 0..14"):
        run.loaded.sample(15, 2, [1, 2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="slot must be in 0..14"):
        run.loaded.sample(-1, 2, [1, 2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="num must be >= 0"):
        run.loaded.sample(0, -1, [1, 2])


def test_export_dir_refused_failed_export_leaves_nothing_overwrite_replaces(
        run, tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(export.ExportError, match="not empty.*overwrite"):
        export.export_run(run.workdir, str(target))
    with pytest.raises(export.ExportError, match="unknown protocol"):
        export.export_run(run.workdir, str(tmp_path / "x"), protocol="test")
    with pytest.raises(export.ExportError, match="would replace the run"):
        export.export_run(run.workdir, run.workdir, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(target) == ["keep.txt"]

    def broken_save(obj, export_dir, signatures=None):  # writes part, then fails
        del obj, signatures
        with open(os.path.join(export_dir, "saved_model.pb"), "w", encoding="utf-8") as f:
            f.write("partial")
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(export.tf.saved_model, "save", broken_save)
        with pytest.raises(RuntimeError, match="disk full"):
            export.export_run(run.workdir, str(tmp_path / "new"))
        with pytest.raises(RuntimeError, match="disk full"):
            export.export_run(run.workdir, str(target), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(target) == ["keep.txt"]

    meta = export.export_run(run.workdir, str(target), overwrite=True, protocol="paper")
    assert sorted(os.listdir(target)) == sorted(os.listdir(run.export_dir))
    assert meta["slot_map"] == run.metrics["paper"]["slot_map"]
    assert meta["slot_map_protocol"] == "paper"
    loaded = tf.saved_model.load(str(target))  # keep a reference: its functions need it alive
    assert loaded.slot_to_class.numpy().tolist() == meta["slot_map"]
    assert loaded.classify(run.images)["probs"].shape == (N, 10)
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_workdir_without_checkpoint_is_a_clear_error(run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(run.workdir, workdir)
    os.remove(workdir / "model.weights.h5")
    with pytest.raises(FileNotFoundError, match="missing model.weights.h5"):
        export.export_run(str(workdir), str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path)) == ["run"]


def export_cli(monkeypatch, **values):
    """Runs export.main in-process with these flag values (export defines its flags only
    when run as a program)."""
    flag_values = dict(workdir=None, export_dir=None, overwrite=False, protocol="heldout")
    monkeypatch.setattr(export, "flags", types.SimpleNamespace(
        FLAGS=types.SimpleNamespace(**{**flag_values, **values})))
    export.main(["export"])


@pytest.mark.parametrize("empty", ["workdir", "export_dir"])
def test_export_cli_refuses_an_empty_directory_in_one_line(run, tmp_path, monkeypatch, capsys,
                                                            empty):
    """--workdir=$UNSET or --export_dir=$UNSET: not the current directory (with --overwrite
    an empty export_dir would have replaced it)."""
    monkeypatch.chdir(tmp_path)
    values = {"workdir": run.workdir, "export_dir": str(tmp_path / "out"), empty: ""}
    with pytest.raises(SystemExit) as exit_info:
        export_cli(monkeypatch, overwrite=True, **values)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"error: {empty} is empty (an unset shell variable?); "
                                       "give a directory\n")
    assert os.listdir(tmp_path) == []


def test_export_cli_keeps_the_traceback_of_an_error_that_is_not_the_users(run, tmp_path,
                                                                           monkeypatch):
    """A ValueError from inside (TensorFlow, a bug) propagates; the package's own errors
    are one line (above)."""
    def export_run(*args):
        raise ValueError("a shape bug")
    monkeypatch.setattr(export, "export_run", export_run)
    with pytest.raises(ValueError, match="a shape bug"):
        export_cli(monkeypatch, workdir=run.workdir, export_dir=str(tmp_path / "out"))


# ----------------------------------------------------------------------- predict CLI


def run_cli(run, *args):
    return subprocess.run([sys.executable, "-m", "gmdgm_tf.predict",
                           f"--export_dir={run.export_dir}", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_predict_cli(run, tmp_path):
    """.npy -> JSON Lines and compact JSON on stdout, a PNG + JPEG directory -> CSV, and a
    bad input."""
    np.save(tmp_path / "x.npy", run.images_uint8)
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    pixels = np.round(run.images[:5] * 255).astype(np.uint8)[..., None]  # [5, 8, 8, 1]
    for i, image in enumerate(pixels):
        channels = np.repeat(image, 3, -1) if i == 4 else image  # one RGB file
        tf.io.write_file(str(pictures / f"img{i}.png"), tf.io.encode_png(channels))
    jpegs = {"img5.jpg": tf.io.encode_jpeg(pixels[0], quality=100),  # gray
             "img6.JPEG": tf.io.encode_jpeg(np.repeat(pixels[1], 3, -1), quality=100)}  # RGB
    for name, jpeg in jpegs.items():
        tf.io.write_file(str(pictures / name), jpeg)
    (pictures / "notes.txt").write_text("not an image")
    np.save(tmp_path / "x_flat.npy", run.images_uint8.reshape(N, 64))
    np.save(tmp_path / "bad.npy", np.zeros((3, 28, 28), np.uint8))
    results = [run_cli(run, *args) for args in (
        [f"--images={tmp_path / 'x.npy'}", f"--output={tmp_path / 'p.jsonl'}"],
        [f"--images={pictures}", f"--output={tmp_path / 'p.csv'}"],
        [f"--images={tmp_path / 'x_flat.npy'}"],
        [f"--images={tmp_path / 'bad.npy'}"])]
    for proc in results[:3]:
        assert proc.returncode == 0, proc.stderr[-3000:]

    with open(tmp_path / "p.jsonl", encoding="utf-8") as f:
        predictions = [json.loads(line) for line in f]
    expected = run.loaded.classify(run.images)
    assert [p["id"] for p in predictions] == [str(i) for i in range(N)]
    np.testing.assert_allclose([p["probs"] for p in predictions], expected["probs"], atol=2e-6)
    assert_argmax(expected["probs"].numpy(), [p["label"] for p in predictions])
    assert [p["class_name"] for p in predictions] == [str(p["label"]) for p in predictions]
    assert [p["slot"] for p in predictions] == expected["slot"].numpy().tolist()
    assert [p["slot_class"] for p in predictions] == expected["slot_class"].numpy().tolist()

    # stdout, from the flat [N, 64] rows: the same predictions, one line per image.
    result = json.loads(results[2].stdout)
    assert result["predictions"] == predictions
    assert result["class_names"] == run.meta.class_names
    lines = [line for line in results[2].stdout.splitlines() if '"probs"' in line]
    assert [json.loads(line.strip().rstrip(",")) for line in lines] == predictions
    assert len(results[2].stdout.splitlines()) == N + 9

    with open(tmp_path / "p.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [f"img{i}.png" for i in range(5)] + list(jpegs)
    gray = [tf.io.decode_jpeg(jpeg, channels=1).numpy() for jpeg in jpegs.values()]
    expected = run.loaded.classify(np.concatenate([pixels, gray]).astype(np.float32) / 255)
    probs = np.array([[float(r[f"prob_{c}"]) for c in run.meta.class_names] for r in rows])
    np.testing.assert_allclose(probs[:4], expected["probs"][:4], atol=2e-6)
    np.testing.assert_allclose(probs[4], expected["probs"][4], atol=1e-3)  # RGB -> gray
    np.testing.assert_allclose(probs[5:], expected["probs"][5:], atol=2e-6)  # JPEG gray
    assert_argmax(expected["probs"].numpy()[:4], [int(r["label"]) for r in rows[:4]])
    assert [int(r["slot"]) for r in rows[:4]] == expected["slot"].numpy()[:4].tolist()

    # A bad input is one line on stderr and exit status 2, before the model is loaded.
    assert results[3].returncode == 2
    errors = [line for line in results[3].stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: bad.npy have shape [3, 28, 28]; this model (digits) takes "
                      "[N, 8, 8], [N, 8, 8, 1], [N, 64] or [8, 8]"]


NPY_ERRORS = {  # .npy contents: the CLI's one error line
    "rank5": (np.zeros((2, 8, 8, 1, 1), np.uint8),
              "x.npy have shape [2, 8, 8, 1, 1]; this model (digits) takes [N, 8, 8], "
              "[N, 8, 8, 1], [N, 64] or [8, 8]"),
    "flat_63": (np.zeros((2, 63), np.float32),
                "x.npy have shape [2, 63]; this model (digits) takes [N, 8, 8]"),
    "3_channels": (np.zeros((2, 8, 8, 3), np.float32),
                   "x.npy have 3 channels (shape [2, 8, 8, 3]); this model takes grayscale "
                   "images, 1 channel"),
    "int16": (np.zeros((2, 8, 8), np.int16),
              "x.npy have dtype int16; give uint8/int32/int64 in 0..16 for digits or "
              "float16/float32/float64 in [0, 1]"),
    "bool": (np.zeros((2, 8, 8), bool), "x.npy have dtype bool; give uint8/int32/int64"),
    "int32_negative": (np.full((2, 8, 8), -1, np.int32),
                       "x.npy: int32 values must be in 0..16 for digits (min -1, max -1); "
                       "or give float in [0, 1]"),
    "int64_above_16": (np.full((2, 8, 8), 255, np.int64), "x.npy: int64 values must be in 0..16"),
    "nan_float64": (np.full((8, 8), np.nan), "x.npy contain 64 NaN/Inf values"),
    "float16_above_1": (np.full((2, 8, 8), 2, np.float16),
                        r"x.npy: float values must be in [0, 1] (min 2, max 2)"),
}


@pytest.mark.parametrize("case", sorted(NPY_ERRORS))
def test_predict_cli_bad_npy_is_one_error_line(run, tmp_path, case):
    images, message = NPY_ERRORS[case]
    np.save(tmp_path / "x.npy", images)
    proc = run_cli(run, f"--images={tmp_path / 'x.npy'}")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), proc.stderr


def test_predict_accepts_what_the_export_accepts(run, tmp_path, monkeypatch):
    """float64 / float16 / int32 / int64 .npy, one [H, W] image and an empty batch give the
    float32 predictions (the export is loaded once: tf.saved_model.load is stubbed)."""
    monkeypatch.setattr(tf.saved_model, "load", lambda export_dir: run.loaded)
    x, x8 = run.images, run.images_uint8
    want = predict.predict(run.export_dir, _npy(tmp_path, x))["predictions"]
    for images in (x.astype(np.float64), x.astype(np.float16)[..., None],
                   x8.astype(np.int32), x8.astype(np.int64)[..., None]):
        got = predict.predict(run.export_dir, _npy(tmp_path, images))["predictions"]
        assert got == want, images.dtype
    one = predict.predict(run.export_dir, _npy(tmp_path, x[3].astype(np.float64)))
    assert one["predictions"] == [{**want[3], "id": "0"}]
    empty = predict.predict(run.export_dir, _npy(tmp_path, np.zeros((0, 8, 8), np.int32)))
    assert empty["predictions"] == []
    predict.write_output(empty, str(tmp_path / "empty.json"))
    with open(tmp_path / "empty.json", encoding="utf-8") as f:
        assert json.load(f) == empty
    result = predict.predict(run.export_dir, _npy(tmp_path, x[:2]))
    predict.write_output(result, str(tmp_path / "p.json"))
    with open(tmp_path / "p.json", encoding="utf-8") as f:
        assert json.load(f) == result


def _npy(tmp_path, images):
    path = str(tmp_path / f"in_{images.dtype}_{images.ndim}_{len(images)}.npy")
    np.save(path, images)
    return path


def test_predict_reports_the_models_own_message_in_one_line(run, tmp_path, monkeypatch):
    """Were the up-front check to miss something, the export's message is what is shown."""
    monkeypatch.setattr(tf.saved_model, "load", lambda export_dir: run.loaded)
    monkeypatch.setattr(predict, "check_images", lambda images, metadata, source: images)
    with pytest.raises(predict.PredictError) as info:
        predict.predict(run.export_dir, _npy(tmp_path, np.full((2, 8, 8, 3), 0.5)))
    assert str(info.value) == ("the model rejected the images: images must have 1 channel "
                               "(grayscale) (got shape [2, 8, 8, 3])")


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 8, 9), np.float32), r"shape \[2, 8, 9\]"),
    (np.zeros((2, 1, 8, 8), np.float32), r"shape \[2, 1, 8, 8\]"),
    (np.zeros((2, 8, 8, 1, 1), np.float32), r"shape \[2, 8, 8, 1, 1\]"),
    (np.zeros((2, 8, 8, 3), np.float32), r"3 channels \(shape \[2, 8, 8, 3\]\)"),
    (np.zeros((2, 8, 8), np.int16), "dtype int16"),
    (np.zeros((2, 8, 8), np.uint16), "dtype uint16"),
    (np.full((2, 8, 8), np.nan), "NaN"),
    (np.full((2, 8, 8), 2.0), r"must be in \[0, 1\]"),
    (np.full((2, 8, 8), 1e300), r"must be in \[0, 1\] \(min inf, max inf\)"),
    (np.full((2, 8, 8), 17, np.uint8), r"0\.\.16"),
    (np.full((2, 8, 8), -3, np.int64), r"int64 values must be in 0\.\.16"),
])
def test_predict_checks_images_up_front(run, images, message):
    with pytest.raises(predict.PredictError, match=message) as info:
        predict.check_images(images, run.metadata)
    assert "\n" not in str(info.value)


def test_predict_input_and_output_errors(run, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "fake.png").write_text("not a png")
    (tmp_path / "fake.jpg").write_text("not a jpeg")
    (tmp_path / "cut.jpg").write_bytes(
        tf.io.encode_jpeg(np.zeros((8, 8, 1), np.uint8)).numpy()[:40])
    cases = [(str(tmp_path / "empty"), "holds no .png, .jpg or .jpeg files"),
             (str(tmp_path / "fake.png"), "is not a PNG file"),
             (str(tmp_path / "fake.jpg"), "is not a JPEG file"),
             (str(tmp_path / "cut.jpg"), "cannot decode"),
             (str(tmp_path / "missing.npy"), "does not exist"),
             (str(tmp_path / "fake.txt"), "does not exist")]
    for path, message in cases:
        with pytest.raises(predict.PredictError, match=message):
            predict.predict(run.export_dir, path)
    with pytest.raises(predict.PredictError, match="not a gmdgm_tf export"):
        predict.predict(str(tmp_path), str(tmp_path / "empty"))
    (tmp_path / "empty" / "folder.png").mkdir()       # a folder is not an image
    with pytest.raises(predict.PredictError, match="holds no .png, .jpg or .jpeg files"):
        predict.predict(run.export_dir, str(tmp_path / "empty"))
    with pytest.raises(predict.PredictError, match="cannot read .*folder.png: Is a directory"):
        predict.read_image(str(tmp_path / "empty" / "folder.png"))
    np.save(tmp_path / "x.npy", run.images_uint8)
    for damage in ("saved_model.pb", "variables"):    # the metadata intact, the model not
        broken = tmp_path / f"broken_{damage}"
        shutil.copytree(run.export_dir, broken)
        if damage == "variables":
            shutil.rmtree(broken / damage)
        else:
            (broken / damage).write_bytes(b"garbage")
        with pytest.raises(predict.PredictError,
                           match=f"cannot load the SavedModel in {broken} .*export the run ag"):
            predict.predict(str(broken), str(tmp_path / "x.npy"))
    with pytest.raises(predict.PredictError, match=r"\.json, \.jsonl or \.csv"):
        predict.check_output(str(tmp_path / "p.txt"))


@pytest.mark.parametrize("text, problem", [
    ("{}", "missing or invalid: image_shape, uint8_divisor, dataset, class_names, "
           "slot_map_protocol"),
    ("[]", "not a JSON object"),
    ('{"format": "gmdgm_tf.export/1", "image_shape": [8, 8]', "Expecting"),
    (None, "missing or invalid: image_shape"),   # the real file, image_shape [8]
    (None, "missing or invalid: class_names"),   # the real file without class_names
])
def test_predict_names_a_damaged_metadata_file_in_one_line(run, tmp_path, text, problem):
    export_dir = tmp_path / "export"
    shutil.copytree(run.export_dir, export_dir)
    path = export_dir / predict.METADATA_FILE
    if text is None:
        metadata = json.loads(path.read_text())
        if "image_shape" in problem:
            metadata["image_shape"] = [8]
        else:
            del metadata["class_names"]
        text = json.dumps(metadata)
    path.write_text(text)
    np.save(tmp_path / "x.npy", run.images_uint8)
    with pytest.raises(predict.PredictError) as info:
        predict.predict(str(export_dir), str(tmp_path / "x.npy"))
    message = str(info.value)
    assert message.startswith(f"{path} is damaged (") and problem in message
    assert "\n" not in message
    if text == "{}":   # the CLI: that line, exit status 2
        proc = subprocess.run([sys.executable, "-m", "gmdgm_tf.predict",
                               f"--export_dir={export_dir}", f"--images={tmp_path / 'x.npy'}"],
                              cwd=REPO, capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [f"error: {message}"]


def test_predict_imports_only_tensorflow_numpy_absl():
    with open(predict.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= {"csv", "io", "json", "os", "sys", "numpy", "tensorflow", "absl"}, imported


def test_concurrent_classify_calls_match_sequential(run):
    """Load test: many threads calling classify at once get the sequential answers."""
    from concurrent.futures import ThreadPoolExecutor  # pylint: disable=import-outside-toplevel
    m = run.loaded
    batches = [run.images[i % N:i % N + 1 + i % 3] for i in range(64)]
    sequential = [m.classify(b)["probs"].numpy() for b in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda b: m.classify(b)["probs"].numpy(), batches))
    for a, b in zip(sequential, concurrent):
        np.testing.assert_array_equal(a, b)


def test_every_export_carries_a_model_card(run):
    card = open(os.path.join(run.export_dir, export.MODEL_CARD_FILE), encoding="utf-8").read()
    heldout = run.metrics["heldout"]["accuracy"]
    assert card.startswith("# Model card: GM-DGM") and "on digits" in card.splitlines()[0]
    assert f"| heldout | {100 * heldout:.1f} % |" in card
    assert "Classes trained with labels: 0, 1, 2, 8, 9" in card and "3, 4, 5, 6, 7" in card


def test_an_auxiliary_model_serves_every_signature_alone_and_predicts_per_image(tmp_path):
    """AGM-DGM: its prediction averages q(y|a,x) over fixed draws of a, so the SavedModel,
    in a process without gmdgm_tf or TFP, gives the Keras model's numbers whatever the
    batch; predict reads it like any export."""
    aux = trained_export(tmp_path, "agmdgm")
    got = client_outputs(aux, tmp_path)
    x = aux.images.reshape(N, -1)[:, np.asarray(aux.meta.pixel_mask, bool)]
    embedding = {k: v.numpy() for k, v in aux.model.embed(x).items()}
    tol = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["classify/slot_probs"], aux.model(x), **tol)
    np.testing.assert_allclose(got["embed/z_mean"], embedding["z_mean"], **tol)
    np.testing.assert_allclose(got["embed/z_scale"], embedding["z_scale"], **tol)
    np.testing.assert_allclose(got["embed_uint8/z_scale"], embedding["z_scale"], **tol)
    assert got["reconstruct/reconstruction"].shape == (N, 8, 8)
    assert got["sample/images"].shape == (SAMPLE["num"], 8, 8)
    one_by_one = np.concatenate([aux.loaded.classify(aux.images[i:i + 1])["slot_probs"]
                                 for i in range(4)])
    np.testing.assert_allclose(one_by_one, got["classify/slot_probs"][:4], **tol)
    np.save(tmp_path / "x.npy", aux.images)
    proc = run_cli(aux, f"--images={tmp_path / 'x.npy'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    predicted = json.loads(proc.stdout)["predictions"]
    assert [p["slot"] for p in predicted] == got["classify/slot"].tolist()
