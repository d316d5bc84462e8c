"""ImageNet-style sources: an extracted folder or the official ILSVRC-2012 tars.

Layouts of SOURCE (ARCHITECTURE.md):

* ``train/<wnid>/*.JPEG``; validation as ``val/*.JPEG`` labelled by a ground-truth file, or
  as ``val/<wnid>/*.JPEG``; SOURCE may also be the train folder itself (``<wnid>/*.JPEG``);
* ``ILSVRC2012_img_train.tar`` (a tar of per-class tars ``<wnid>.tar``) and
  ``ILSVRC2012_img_val.tar`` (50,000 flat JPEGs), read in place: a member of a per-class tar
  is a byte range of the outer file, so nothing is extracted.

Validation ground truth: by default the file tensorflow-datasets ships
(``validation_labels.txt``: line i holds the wnid of ``ILSVRC2012_val_{i:08d}.JPEG``), or a
user's ``filename,wnid`` CSV. Labels are matched by the number in the file name, never by
position in a sorted listing, so any subset of the validation set is labelled correctly
(tfds' own builder zips the sorted names with the lines, which mislabels a subset).

Label order: when the classes are exactly the 1000 ILSVRC-2012 classes, the order of tfds'
``labels.txt`` (the official one, which Keras and TF-Hub models use); for any other set of
classes, the sorted class names. Class texts come from a ``wnid text`` file
(``LOC_synset_mapping.txt`` of the Kaggle release, Caffe's ``synset_words.txt``, Tiny
ImageNet's ``words.txt``) given or found in SOURCE; tfds ships none, so otherwise the text is
the wnid itself.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import importlib.util
import os
import re
from collections.abc import Iterator

from edgeline.components.ingest import tfrecord
from edgeline.components.ingest.images import PreparedImage
from edgeline.components.ingest.plan import IngestPlan
from edgeline.components.ingest.sources import (
    FileRef,
    Scope,
    display_member,
    iter_tar,
    list_files,
    printable,
)
from edgeline.pipeline import records
from edgeline.pipeline.errors import UserError

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
CLASS_NAME_FILES = ("LOC_synset_mapping.txt", "synset_words.txt", "words.txt")
VAL_NUMBER = re.compile(r"ILSVRC2012_val_(\d+)")


# -- what tensorflow-datasets ships -------------------------------------------------------
def tfds_imagenet_dir() -> str:
    """The imagenet2012 folder inside the installed tensorflow-datasets (no TF import)."""
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("tensorflow-datasets is not installed; pass --val-labels FILE")
    return os.path.join(spec.submodule_search_locations[0], "datasets", "imagenet2012")


@functools.lru_cache(maxsize=1)
def official_classes() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 wnids in tfds' (the official) label order."""
    with open(os.path.join(tfds_imagenet_dir(), "labels.txt"), encoding="utf-8") as f:
        return tuple(line.strip() for line in f if line.strip())


# -- ground truth and class names ------------------------------------------------------------
def match_key(file_name: str) -> int | str:
    """How a validation file finds its label: the number of ``ILSVRC2012_val_00000042.JPEG``
    (42), else the file's base name."""
    base = os.path.basename(file_name)
    found = VAL_NUMBER.search(base)
    return int(found.group(1)) if found else base


def read_ground_truth(path: str | None) -> dict[int | str, str]:
    """match_key -> wnid, from tfds' validation_labels.txt (``path`` None), a file with one
    wnid per line (line i for image number i), or a ``filename,wnid`` CSV."""
    if path is None:
        path = os.path.join(tfds_imagenet_dir(), "validation_labels.txt")
    if not os.path.isfile(path):
        raise UserError(f"validation labels file does not exist: {path!r}")
    text = _read_text(path, "validation labels file")
    lines = text.split()
    if len(lines) == text.count("\n") + (not text.endswith("\n")) and "," not in text:
        return dict(enumerate(lines, start=1))  # one wnid per line, as tfds ships it
    try:
        rows = [row for row in csv.reader(text.splitlines()) if any(c.strip() for c in row)]
    except csv.Error as err:
        raise UserError(f"{path}: not a CSV file ({err})") from None
    if not rows:
        raise UserError(f"validation labels file is empty: {path!r}")
    if rows[0][0].strip().lower() in ("filename", "file", "file_name", "imageid", "image"):
        rows = rows[1:]
    truth: dict[int | str, str] = {}
    for line, row in enumerate(rows, start=2):
        fields = [cell.strip() for cell in row]
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise UserError(
                f"{path}: line {line}: expected 'filename,wnid', received {','.join(row)!r}"
            )
        # The second column's first word: Kaggle's LOC_val_solution.csv puts boxes after it.
        name, wnid = fields[0], fields[1].split()[0]
        key = match_key(name)
        if truth.get(key, wnid) != wnid:
            raise UserError(f"{path}: {name!r} is labelled twice ({truth[key]} and {wnid})")
        truth[key] = wnid
    return truth


def read_class_names(path: str) -> dict[str, str]:
    """wnid -> text from lines ``wnid<space or tab>text``."""
    names = {}
    for line in _read_text(path, "class names file").splitlines():
        parts = line.strip().split(None, 1)
        if parts:
            names[parts[0]] = parts[1].strip() if len(parts) > 1 else parts[0]
    return names


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except UnicodeDecodeError as err:
        raise UserError(f"{what} is not UTF-8 text: {path!r} (byte {err.start})") from None
    except OSError as err:
        raise UserError(f"cannot read {what} {path!r}: {err.strerror or err}") from None


# -- layout ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ImagenetLayout:
    root: str
    train_dir: str | None = None
    train_tar: str | None = None
    val_dir: str | None = None
    val_tar: str | None = None


def _entries(directory: str) -> list[os.DirEntry]:
    try:
        return sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as err:
        raise UserError(f"cannot list the folder {directory!r}: {err.strerror or err}") from None


def _subdirs(directory: str) -> list[str]:
    return [e.name for e in _entries(directory) if e.is_dir()]


def _top_files(directory: str) -> list[str]:
    return [e.name for e in _entries(directory) if not e.is_dir()]


def discover(source: str) -> ImagenetLayout:
    """Which of the supported layouts ``source`` holds; a clear UserError if none."""
    if not os.path.exists(source):
        raise UserError(f"ingest source does not exist: {source!r}")
    if not os.path.isdir(source):
        raise UserError(f"ingest source must be a folder, received a file: {source!r}")
    root = os.path.abspath(source)

    def found(*names: str, directory: bool) -> str | None:
        for name in names:
            path = os.path.join(root, name)
            if (os.path.isdir if directory else os.path.isfile)(path):
                return path
        return None

    layout = ImagenetLayout(
        root=root,
        train_dir=found("train", directory=True),
        train_tar=found(TRAIN_TAR, directory=False),
        val_dir=found("val", "validation", directory=True),
        val_tar=found(VAL_TAR, directory=False),
    )
    for folder, tar in ((layout.train_dir, layout.train_tar), (layout.val_dir, layout.val_tar)):
        if folder and tar:
            raise UserError(
                f"ingest source holds both {os.path.basename(folder)}/ and "
                f"{os.path.basename(tar)}; keep one of them: {root!r}"
            )
    if layout.train_dir and layout.val_dir:
        train, val = (os.path.realpath(p) for p in (layout.train_dir, layout.val_dir))
        if train == val or train.startswith(val + os.sep) or val.startswith(train + os.sep):
            raise UserError(f"the train and validation folders of {root!r} are the same files "
                            f"({train!r} and {val!r}): one image would be in both splits")
    if any((layout.train_dir, layout.train_tar, layout.val_dir, layout.val_tar)):
        return layout
    if any(not name.startswith(".") for name in _subdirs(root)):
        return ImagenetLayout(root=root, train_dir=root)  # SOURCE is the train folder itself
    raise UserError(
        f"no ImageNet data in {root!r}: expected train/<wnid>/*.JPEG, val/, "
        f"{TRAIN_TAR} or {VAL_TAR}"
    )


# -- units of work --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ClassFolderUnit:
    """Every file below one class folder."""

    split: str
    directory: str
    class_name: str  # printable: the folder's name with any non-UTF-8 bytes escaped
    scope: Scope
    reject: str | None = None  # set for folders that cannot be a class

    def list_refs(self, plan: IngestPlan) -> Iterator[FileRef]:
        reject = self.reject or _class_problem(plan, self.class_name)
        for listed in list_files(self.directory, self.scope):
            name = printable(listed.name)
            display = printable(os.path.join(self.directory, listed.name))
            yield FileRef(self.split, f"{self.class_name}/{name}", display, listed.path,
                          label=self.class_name, reject=listed.reject or reject)


@dataclasses.dataclass(frozen=True)
class FlatFolderUnit:
    """The files directly in a folder: flat validation images labelled by the ground truth,
    or stray files beside the class folders of train/."""

    split: str
    directory: str
    labelled: bool
    scope: Scope

    def list_refs(self, plan: IngestPlan) -> Iterator[FileRef]:
        for listed in list_files(self.directory, self.scope, top_only=True):
            name = printable(listed.name)
            if self.labelled:
                wnid, reject = _ground_truth(plan, name)
            else:
                wnid, reject = None, "not inside a class folder"
            display = printable(os.path.join(self.directory, listed.name))
            yield FileRef(self.split, name, display, listed.path, label=wnid,
                          reject=listed.reject or reject)


@dataclasses.dataclass(frozen=True)
class ClassTarUnit:
    """One per-class tar (``n01440764.tar``) inside ILSVRC2012_img_train.tar."""

    split: str
    tar_path: str
    member: str
    class_name: str
    offset: int
    size: int

    def list_refs(self, plan: IngestPlan) -> Iterator[FileRef]:
        reject = _class_problem(plan, self.class_name)
        with open(self.tar_path, "rb") as f:
            try:
                entries = list(iter_tar(f, self.offset, self.size))
            except Exception as err:  # noqa: BLE001 - a broken inner tar is one rejected input
                display = printable(display_member(self.tar_path, self.member))
                yield FileRef(self.split, printable(self.member), display, self.tar_path,
                              reject=f"unreadable per-class tar: {err}")
                return
        for entry in entries:
            yield FileRef(
                self.split,
                f"{self.class_name}/{printable(entry.name)}",
                printable(display_member(self.tar_path, self.member, entry.name)),
                self.tar_path,
                entry.offset,
                entry.size,
                label=self.class_name,
                reject=entry.reject or reject,
            )


@dataclasses.dataclass(frozen=True)
class FlatTarUnit:
    """ILSVRC2012_img_val.tar: flat JPEGs labelled by the ground truth."""

    split: str
    tar_path: str

    def list_refs(self, plan: IngestPlan) -> Iterator[FileRef]:
        with open(self.tar_path, "rb") as f:
            entries = list(iter_tar(f))
        for entry in entries:
            name = printable(entry.name)
            wnid, reject = _ground_truth(plan, name)
            yield FileRef(
                self.split,
                name,
                printable(display_member(self.tar_path, entry.name)),
                self.tar_path,
                entry.offset,
                entry.size,
                label=wnid,
                reject=entry.reject or reject,
            )


@dataclasses.dataclass(frozen=True)
class RejectedUnit:
    """An input that planning already found unusable (e.g. an unsafe outer tar member)."""

    ref: FileRef

    @property
    def split(self) -> str:
        return self.ref.split

    def list_refs(self, plan: IngestPlan) -> Iterator[FileRef]:
        yield self.ref


def _class_problem(plan: IngestPlan, class_name: str) -> str | None:
    if class_name in plan.class_index:
        return None
    return f"class {class_name} is not among the {len(plan.class_index)} training classes"


def _ground_truth(plan: IngestPlan, file_name: str) -> tuple[str | None, str | None]:
    wnid = plan.val_ground_truth.get(match_key(file_name))
    if wnid is None:
        return None, f"no ground-truth label for {os.path.basename(file_name)}"
    return wnid, _class_problem(plan, wnid)


# -- planning -------------------------------------------------------------------------------
def _open_tar_members(tar_path: str):
    with open(tar_path, "rb") as f:
        try:
            return list(iter_tar(f))
        except Exception as err:  # noqa: BLE001 - tarfile raises several kinds
            raise UserError(f"cannot read {tar_path!r} as an uncompressed tar: {err}") from None


def _class_folders(split: str, folder: str, scope: Scope) -> tuple[list, list[str]]:
    """A unit for each class folder in ``folder``, and one for the files beside them; hidden
    folders and links to folders are listed as rejected (see sources.Scope)."""
    units: list = [FlatFolderUnit(split, folder, labelled=split == "validation", scope=scope)]
    classes: list[str] = []
    for entry in _entries(folder):
        if not entry.is_dir():
            continue
        name = printable(entry.name)
        if entry.is_symlink():
            problem = scope.link_problem(entry.path)
            units.append(RejectedUnit(FileRef(split, name, printable(entry.path), entry.path,
                                              reject=f"class folder is a {problem}")))
            continue
        if name.startswith("."):
            units.append(ClassFolderUnit(split, entry.path, name, scope,
                                         reject="inside a hidden folder, not a class"))
        else:
            units.append(ClassFolderUnit(split, entry.path, name, scope))
            classes.append(name)
    return units, classes


def _train_units(layout: ImagenetLayout, scope: Scope) -> tuple[list, list[str]]:
    """Units and class names of the train split."""
    units: list = []
    classes: list[str] = []
    if layout.train_dir:
        units, classes = _class_folders("train", layout.train_dir, scope)
    elif layout.train_tar:
        for entry in _open_tar_members(layout.train_tar):
            display = printable(display_member(layout.train_tar, entry.name))
            reject = entry.reject
            if reject is None and not entry.name.endswith(".tar"):
                reject = "not a per-class tar (<wnid>.tar)"
            if reject:
                ref = FileRef("train", printable(entry.name), display, layout.train_tar,
                              entry.offset, entry.size, reject=reject)
                units.append(RejectedUnit(ref))
                continue
            name = printable(os.path.basename(entry.name)[: -len(".tar")])
            units.append(ClassTarUnit("train", layout.train_tar, entry.name, name,
                                      entry.offset, entry.size))
            classes.append(name)
    return units, classes


def _validation_units(layout: ImagenetLayout, scope: Scope) -> tuple[list, list[str], bool]:
    """Units, class-folder names and whether flat (ground-truth labelled) files exist."""
    if layout.val_tar:
        return [FlatTarUnit("validation", layout.val_tar)], [], True
    if not layout.val_dir:
        return [], [], False
    units, folders = _class_folders("validation", layout.val_dir, scope)
    return units, folders, bool(_top_files(layout.val_dir))


@dataclasses.dataclass
class ImagenetPlan:
    units: list
    classes: list[str]  # in label order
    class_text: dict[str, str]
    ground_truth: dict
    layout: ImagenetLayout
    label_order: str  # how the label order was chosen, for the artifact's properties


def plan_imagenet(
    source: str, *, val_labels: str | None = None, class_names: str | None = None
) -> ImagenetPlan:
    """Find the layout, the classes and the ground truth; list the units of work."""
    layout = discover(source)
    # The layout folders may be links (train/ on another disk); nothing below them is followed.
    scope = Scope.of(layout.root, layout.train_dir, layout.val_dir)
    train_units, train_classes = _train_units(layout, scope)
    val_units, val_folders, flat_val = _validation_units(layout, scope)
    if layout.train_dir or layout.train_tar:
        if not train_classes:
            where = layout.train_dir or layout.train_tar
            raise UserError(f"no class folders (<wnid>/) in the train split: {where!r}")
    ground_truth = read_ground_truth(val_labels) if (flat_val or val_labels) else {}
    if train_classes:
        class_set = set(train_classes)
    else:
        class_set = set(val_folders) | (set(ground_truth.values()) if flat_val else set())
    if not class_set:
        raise UserError(f"no images found in ingest source {layout.root!r}")
    official = official_classes()
    unknown = sorted(set(ground_truth.values()) - class_set - set(official))
    if unknown:
        labels_file = val_labels or "tfds validation_labels.txt"
        raise UserError(
            f"{labels_file}: names {len(unknown)} unknown class(es), e.g. {unknown[0]!r}; "
            f"known: the {len(class_set)} class folders of the source and the 1000 ImageNet wnids"
        )
    if class_set == set(official):
        classes, order = list(official), "official ILSVRC-2012 order (tfds labels.txt)"
    else:
        classes, order = sorted(class_set), "sorted class names"
    if class_names is None:
        class_names = next(
            (os.path.join(layout.root, n) for n in CLASS_NAME_FILES
             if os.path.isfile(os.path.join(layout.root, n))),
            None,
        )
    texts = read_class_names(class_names) if class_names else {}
    return ImagenetPlan(
        units=train_units + val_units,
        classes=classes,
        class_text={wnid: texts.get(wnid, wnid) for wnid in classes},
        ground_truth=ground_truth,
        layout=layout,
        label_order=order,
    )


# -- the example ----------------------------------------------------------------------------
def classification_features(
    plan: IngestPlan, ref: FileRef, image: PreparedImage, sha256: str
) -> dict[str, tfrecord.FeatureValue]:
    """The features of records.classification_example, for the TF-free encoder."""
    wnid = ref.label
    return {
        records.ENCODED: ("bytes", [image.encoded]),
        records.FORMAT: ("bytes", [b"jpeg"]),
        records.HEIGHT: ("int64", [image.height]),
        records.WIDTH: ("int64", [image.width]),
        records.FILENAME: ("bytes", [os.path.basename(ref.key).encode()]),
        records.SOURCE_ID: ("bytes", [ref.key.encode()]),
        records.SHA256: ("bytes", [sha256.encode()]),
        records.LABEL: ("int64", [plan.class_index[wnid]]),
        records.SYNSET: ("bytes", [wnid.encode()]),
        records.TEXT: ("bytes", [plan.class_text.get(wnid, wnid).encode()]),
    }
