"""Reading, exporting, copying and deleting registered runs.

Everything here goes through the run record (:mod:`~fiftyone_csl.plugin.record`):
files are read only from the run's own, verified version, and deleting
removes exactly what the run owns.
"""

import os
import shutil

from ..core import flags as fcflags
from ..core.errors import CSLError
from ..core.manifest import Manifest
from ..core.results import CSLResults
from ..core.stages import score_from_files
from . import fields as fcfields
from . import peers as fcpeers
from . import views as fcviews
from . import writeback
from .locks import dataset_lock, run_in_progress
from .record import RunNames, dataset_title, get_run_config, list_csl_runs, load_manifest, owned_by
from .store import RunStore

__all__ = ["list_csl_runs", "get_run_config"]


def load_videos(samples, csl_field: str, threshold=None) -> dict:
    """The scored videos of ``samples`` in run ``csl_field``: ``{sample_id:
    VideoScores}``, scored at the run's threshold unless one is given."""
    dataset = samples._dataset
    writeback.ensure_consistent(dataset, csl_field)
    config = get_run_config(samples, csl_field)
    manifest = load_manifest(dataset, config)
    threshold = fcflags.resolve_threshold(config.threshold if threshold is None else threshold, len(manifest.classes))
    wanted = set(samples.values("id"))
    ids = [sid for sid in manifest.trajectories if sid in wanted]
    videos = score_from_files(config.run_dir, manifest, ids, threshold, config.peer_scores)
    if "mistakenness" in config.peer_scores and videos:
        for sid, values in fcpeers.read_mistakenness(samples, RunNames.of(config), videos).items():
            videos[sid].scores["mistakenness"] = values
    return videos


def load_csl_results(samples, csl_field: str = "csl") -> CSLResults:
    """Loads a run's results for the videos of ``samples`` from its run
    directory (the manifest and every file checked first)."""
    videos = load_videos(samples, csl_field)
    config = get_run_config(samples, csl_field)
    threshold = fcflags.resolve_threshold(config.threshold, len(config.classes))
    return CSLResults(
        csl_field, config.run_dir, config.classes, threshold, videos, getattr(config, "warnings", None) or []
    )


def delete_csl_run(samples, csl_field: str = "csl", delete_files: bool = True) -> None:
    """Deletes a CSL run: its fields, saved views, tags, run record and (by
    default) its files. The label field and anything the run did not create
    are never touched; on a cloned dataset, files that belong to the
    original dataset stay."""
    dataset = samples._dataset
    holder = run_in_progress(dataset, csl_field)
    if holder is not None:
        raise CSLError(f"run '{csl_field}' is in progress ({holder['host']} pid {holder['pid']}); nothing was deleted")
    with dataset_lock(dataset):
        writeback.recover(dataset, csl_field)
        config = get_run_config(samples, csl_field)
        names = RunNames.of(config)
        store = RunStore.of(config) if delete_files and owned_by(dataset, config) else None
        if store is not None:
            store.check_removable()  # before the first deletion
        if "mistakenness" in names.peer_scores:
            fcpeers.delete_brain_outputs(dataset, names.brain_key)
        # the tags this run put on the labels and videos it queued, and no other
        writeback.untag_review(dataset, getattr(config, "review", None))
        fcfields.delete_outputs(dataset, names.paths())
        fcviews.delete_views(dataset, names.views())
        dataset.delete_run(csl_field)
        if store is not None:
            store.remove_all()


def copy_csl_run(samples, csl_field: str = "csl", run_dir: str | None = None) -> str:
    """Gives a cloned dataset its own copy of a run it inherited.

    ``dataset.clone()`` copies run records but not run files; the clone's
    record still names the original's files, which this dataset must not
    use or delete. This copies them (verified) into a run folder keyed by
    this dataset's id and points the record there. Returns the new folder.
    """
    dataset = samples._dataset
    config = get_run_config(samples, csl_field)
    if owned_by(dataset, config):
        raise CSLError(f"run '{csl_field}' already belongs to dataset {dataset_title(dataset)}")
    source = Manifest.load(config.run_dir, getattr(config, "manifest_sha256", None), run_key=csl_field)
    for relpath in source.files:
        source.verified_path(config.run_dir, relpath)
    default_root = RunStore.of(config).root
    store = RunStore(str(dataset._doc.id), csl_field, run_dir or default_root)
    store.check_writable()
    staging = store.staging()
    try:
        for relpath in source.files:
            os.makedirs(os.path.dirname(os.path.join(staging, relpath)), exist_ok=True)
            shutil.copy2(os.path.join(config.run_dir, relpath), os.path.join(staging, relpath))
        source.dataset_id = str(dataset._doc.id)
        with dataset_lock(dataset):
            version = store.promote(staging)
            config.manifest_sha256 = source.save(version)
            config.run_dir = version
            config.dataset_id = source.dataset_id
            dataset.update_run_config(csl_field, config)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version
