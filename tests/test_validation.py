"""Bad input gets a clear error and changes nothing in the dataset."""

import os

import fiftyone as fo
import fiftyone_csl as fcsl
import numpy as np
import pytest
from _common import FAST, snapshot


def _refused(dataset, match, *args, **kwargs):
    before = snapshot(dataset)
    runs_dir = os.path.join(os.environ["FIFTYONE_CSL_DIR"], "runs", dataset.name)
    files_before = sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []
    with pytest.raises(fcsl.CSLError, match=match):
        fcsl.compute_csl(dataset, *args, **{**FAST, **kwargs})
    assert snapshot(dataset) == before
    files_after = sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []
    assert files_after == files_before, "a failed call left files behind"


def test_missing_label_field(scratch):
    _refused(scratch, "does not exist", "no_such_field", embeddings_field="emb")


def test_label_field_of_wrong_type(scratch):
    _refused(scratch, "must be a frame-level Classification", "frames.emb", embeddings_field="emb")
    _refused(scratch, "must be a frame-level Classification", "injected", embeddings_field="emb")


def test_no_labelled_frames(scratch):
    scratch.add_frame_field("empty", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    _refused(scratch, "no labelled frames", "empty", embeddings_field="emb")


def test_single_class(scratch):
    labels = [[fo.Classification(label="only") for _ in frames] for frames in scratch.values("frames.frame_number")]
    scratch.set_values("frames.one_class", labels)
    _refused(scratch, "at least 2 classes", "one_class", embeddings_field="emb")


def test_video_file_missing_on_disk(scratch):
    sample = scratch.first()
    sample.filepath = "/nonexistent/video.mp4"
    sample.save()
    _refused(scratch, "missing on disk", "phase")


def test_embeddings_of_wrong_dimension(scratch):
    sample = scratch.first()
    sample.frames[1]["emb"] = np.zeros(7, dtype=np.float32)
    sample.save()
    _refused(scratch, "inconsistent dimension", "phase", embeddings_field="emb")


def test_embeddings_with_nan(scratch):
    sample = scratch.first()
    vector = np.array(sample.frames[2]["emb"], dtype=np.float32)
    vector[0] = np.nan
    sample.frames[2]["emb"] = vector
    sample.save()
    _refused(scratch, "NaN", "phase", embeddings_field="emb")


def test_csl_field_clashing_with_user_field_is_refused_even_with_overwrite(scratch):
    scratch.add_sample_field("mine_max", fo.StringField)
    _refused(scratch, "no run of this key created", "phase", csl_field="mine", embeddings_field="emb")
    # overwrite=True replaces what a run of this key created, never a user's field
    _refused(scratch, "no run of this key created", "phase", csl_field="mine", embeddings_field="emb", overwrite=True)


def test_fewer_videos_than_folds(scratch):
    _refused(scratch, "cannot be split into 20 folds", "phase", embeddings_field="emb", folds=20)


def test_bad_run_key_and_options(scratch):
    _refused(scratch, "valid identifier", "phase", csl_field="bad-key", embeddings_field="emb")
    _refused(scratch, "unknown backbone", "phase", backbone="vgg99")
    _refused(scratch, "unknown model", "phase", embeddings_field="emb", model="lstm")
    _refused(scratch, "stride", "phase", embeddings_field="emb", stride=0)
    _refused(scratch, "threshold", "phase", embeddings_field="emb", threshold="high")
    _refused(scratch, "unknown precision", "phase", embeddings_field="emb", precision="fp8")
    _refused(scratch, "needs a CUDA device", "phase", embeddings_field="emb", precision="fp16", device="cpu")


def test_unknown_class_list(scratch):
    _refused(scratch, "not in classes", "phase", embeddings_field="emb", classes=["phase_1", "phase_2"])
