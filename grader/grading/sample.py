"""A tf.data answer's sample, read as data and compared with the data's own pictures.

The sandbox exports the first elements the student's dataset yields: each part's dtype,
shape, the sha256 of its serialized tensor and (strings, small arrays) its values. The
grader knows every picture of the data by the same hash (`reference.data.decoded_pictures`),
so a sampled image is recognised whatever order the pipeline yields it in. These pure
functions say what an element is and what is wrong with it, in the student's terms.
"""

from __future__ import annotations

import dataclasses
import math
import os

from reference.data import THUMB, Picture

LABELS = {  # the forms a lab's labels take ([[checks]] labels = ...)
    "name": "class names (one string per picture)",
    "index": "class indices (one integer per picture)",
    "one_hot": "one-hot vectors (one number per class)",
}
IMAGE_FILES = (".jpg", ".jpeg", ".png")
THUMB_SIZE = THUMB * THUMB * 4  # the most numbers a thumbnail has (four channels)
SAME = 3.0  # a thumbnail this close (in 0-255 levels, at every point) is the same picture, decoded by another decoder
RESEMBLES = 24.0  # ... this close on average: the same photo, changed (resized, converted, cropped a little)


@dataclasses.dataclass(frozen=True)
class Part:
    """One part of an element: a tensor (its dtype, shape, hash, values if small), or
    another kind of value (a RaggedTensor, a dict) known by its kind only."""

    dtype: str
    shape: tuple | None  # None: not known
    sha256: str = ""
    values: tuple = ()
    kind: str = "Tensor"
    thumb: tuple = ()  # a picture's thumbnail (reference.data.thumbnail), as the run computed it

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_string(self) -> bool:
        return self.kind == "Tensor" and self.dtype == "string"

    @property
    def is_number(self) -> bool:
        return self.kind == "Tensor" and self.dtype != "string"

    @property
    def text(self) -> str:
        """A string scalar's value ("" for anything else)."""
        return str(self.values[0]) if self.is_string and self.rank == 0 and self.values else ""

    def __str__(self) -> str:
        shape = "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]" if self.shape is not None else "[?]"
        if self.kind != "Tensor":
            return f"a {self.kind}" + (f" of {self.dtype} {shape}" if self.dtype else "")
        if self.is_string and self.rank == 0:
            return f"string {self.text[:60]!r}"
        if self.rank == 0 and self.values:
            return f"{self.dtype} {self.values[0]}"
        if self.values and len(self.values) <= 5:
            return f"{self.dtype} {shape} {list(self.values)}"
        return f"{self.dtype} {shape}"


@dataclasses.dataclass(frozen=True)
class Sample:
    elements: tuple[tuple[Part, ...], ...]
    element_spec: str
    cardinality: int  # elements in the dataset; -1: infinite, -2: not known
    counted: int | None = None  # elements counted when the cardinality is not known (up to the data's files + 1)

    @property
    def size(self) -> int | None:
        """How many elements the dataset has: -1 if it never ends, None if not known."""
        return self.cardinality if self.cardinality >= -1 else self.counted


def read(export: dict) -> Sample:
    """The sample in the run's export.json; ValueError if it is not what the runner writes."""
    elements = export.get("sample")
    if not isinstance(elements, list) or not all(isinstance(e, list) for e in elements):
        raise ValueError("the sample is not a list of elements")
    cardinality, counted = export.get("cardinality", -2), export.get("counted")
    return Sample(tuple(tuple(_part(p) for p in element) for element in elements), str(export.get("element_spec", ""))[:2000],
                  cardinality if _whole(cardinality) else -2, counted if _whole(counted) and counted >= 0 else None)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _part(entry) -> Part:
    if not isinstance(entry, dict):
        raise ValueError("a part of an element is not described")
    shape = entry.get("shape")
    if shape is not None and not (isinstance(shape, list) and all(d is None or (isinstance(d, int) and d >= 0) for d in shape)):
        raise ValueError("a part's shape is not a list of sizes")
    values = entry.get("value", [])
    thumb = entry.get("thumb", [])
    thumb = tuple(float(v) for v in thumb[:THUMB_SIZE]) if isinstance(thumb, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in thumb[:THUMB_SIZE]) else ()
    return Part(str(entry.get("dtype", ""))[:40], None if shape is None else tuple(shape), str(entry.get("sha256", ""))[:64],
                tuple(v if isinstance(v, (int, float, str)) else str(v) for v in values[:16]) if isinstance(values, list) else (),
                str(entry.get("kind", "Tensor"))[:60], thumb)


def describe(element) -> str:
    return "(" + ", ".join(str(part) for part in element) + ")"


def is_path(text: str) -> bool:
    return "/" in text or text.lower().endswith(IMAGE_FILES)


# --- what an element is ------------------------------------------------------------


def read_hint(problem: str) -> str:
    """A fix for why the run has no sample ("" if the problem already says one)."""
    if "no variable named" in problem:
        return ": the lab's next cells read the dataset by that name, so assign your final dataset to it"
    if "not a tf.data.Dataset" in problem:
        return ": build it with tf.data (mapping a function over a dataset of file names gives one)"
    if "fails when it is read" in problem:
        return ("; the function you map runs when the dataset is read, so its errors show only then: "
                "call it on one file name to see the error where it happens")
    return ""


def element_problem(element, labels: str) -> str:
    """What is wrong with an element's form as an (image, label) pair ("" if nothing);
    the image's own form is the pictures' check (see image_form_problem)."""
    if len(element) == 1:
        only = element[0]
        if only.is_string and only.rank == 0 and is_path(only.text):
            return (f"the dataset yields file names ({only.text!r}), not (picture, label) pairs: map your decoding "
                    "function over the file names (.map(...))")
        if only.is_number and only.rank == 3:
            return "the dataset yields pictures without their labels: return image, label from the function you map"
    if len(element) != 2:
        return f"each element has {len(element)} part(s), {describe(element)}; the lab's elements are (picture, label) pairs"
    if pair(element)[2]:
        return (f"each element is (label, picture), {describe(element)}: the lab's elements are (picture, label) pairs, "
                "picture first: return image, label from the function you map")
    if batched(element):
        return (f"the elements come in batches ({describe(element)}): this step yields one picture per element, so "
                "leave batching for later")
    return label_form_problem(element[1], labels)


def batched(element) -> bool:
    """A pair whose picture is a batch of pictures (or whose two parts are lists alike)."""
    image, label = element
    return image.rank == 4 or (image.rank == 1 and label.rank == 1)


def image_form_problem(image: Part, image_dtype: str) -> str:
    """What is wrong with the form of an element's image ("" if nothing)."""
    if image.kind != "Tensor":
        return f"the image is {image}, not a tensor of pixels: decode the file's bytes with tf.io.decode_jpeg"
    if image.is_string:
        if image.rank == 0 and is_path(image.text):
            return (f"the image is still the file's name ({image.text!r}): read the file with tf.io.read_file, then "
                    "decode its bytes with tf.io.decode_jpeg")
        return "the image is a string (the file's bytes, not decoded): decode it with tf.io.decode_jpeg"
    if image.rank == 4:
        return (f"the images come in batches ({image}): this step yields one picture per element, so leave "
                "batching for later")
    if image.rank != 3:
        return f"the image is {image}; a decoded picture has the shape [height, width, channels]"
    if image.dtype != image_dtype:
        later = " (converting them comes in a later lab)" if image_dtype == "uint8" else ""
        return f"the images are {image.dtype}; the lab's are {image_dtype}, as tf.io.decode_jpeg gives them{later}"
    return ""


def label_form_problem(label: Part, labels: str) -> str:
    """What is wrong with the form of an element's label ("" if nothing)."""
    if _form_of(label) == labels:
        return ""
    expected = LABELS[labels]
    if labels == "name" and (label.kind == "RaggedTensor" or (label.is_string and label.rank == 1)):
        return (f"the label is {label}, a list of strings (the split path?); the lab's labels are {expected}: keep one "
                "part, the name of the folder that holds the file")
    fix = {
        "name": "return the folder's name itself, the string, without turning it into a number",
        "index": "turn the class name into its index in the list of classes",
        "one_hot": "turn the class into a one-hot vector (tf.one_hot)",
    }[labels]
    return f"the label is {label}; the lab's labels are {expected}: {fix}"


def _form_of(label: Part) -> str | None:
    """Which of the lab's forms a label has (name, index, one_hot), or None."""
    if label.is_string and label.rank == 0:
        return "name"
    if label.is_number and label.rank == 0 and label.dtype.startswith(("int", "uint")):
        return "index"
    if label.is_number and label.rank == 1:
        return "one_hot"
    return None


def class_of(label: Part, classes) -> str | None:
    """The class a label names, in whichever of the forms it has, or None if it names none."""
    form = _form_of(label)
    if form is None or not label.values:
        return None
    if form == "name":
        return label.text if label.text in classes else None
    if form == "index":
        index = label.values[0]
        return classes[index] if isinstance(index, int) and 0 <= index < len(classes) else None
    values = list(label.values)
    if len(values) != len(classes) or max(values) <= 0 or values.count(max(values)) != 1:
        return None
    return classes[values.index(max(values))]


# --- which of the data's pictures an image is -------------------------------------


def picture_of(image: Part, pictures: dict[str, Picture]) -> Picture | None:
    """The data's picture that `image` is, decoded as it is: the same tensor, or the same
    shape and dtype with pixels that any correct JPEG decoder gives (its thumbnail within
    SAME levels everywhere: decoders differ by a level or two per pixel)."""
    exact = pictures.get(image.sha256)
    if exact is not None or not image.thumb or image.dtype != "uint8":
        return exact
    same_shape = [p for p in pictures.values() if p.thumb and p.shape == image.shape and len(p.thumb) == len(image.thumb)]
    distance, nearest = min(((max(abs(a - b) for a, b in zip(image.thumb, p.thumb)), p) for p in same_shape),
                            default=(None, None), key=lambda pair: pair[0])
    return nearest if distance is not None and distance <= SAME else None


def resembles(image: Part, pictures: dict[str, Picture]) -> Picture | None:
    """The data's picture that `image` was made from, whatever was done to it after
    decoding (resized, converted to floats, in [0, 1] or not): its thumbnail on average
    within RESEMBLES levels of the picture's, the nearest such; None if none is."""
    exact = picture_of(image, pictures)
    if exact is not None or not image.thumb or image.rank != 3:
        return exact
    channels = image.shape[-1]
    scale = 255.0 if image.dtype.startswith("float") and max(image.thumb) <= 1.0 else 1.0
    thumb = [v * scale for v in image.thumb]
    candidates = [(p, _in_channels(p.thumb, p.shape[-1], channels)) for p in pictures.values() if p.thumb and p.shape]
    scored = [(sum(abs(a - b) for a, b in zip(thumb, theirs)) / len(thumb), p) for p, theirs in candidates if len(theirs) == len(thumb)]
    distance, nearest = min(scored, default=(None, None), key=lambda pair: pair[0])
    return nearest if distance is not None and distance <= RESEMBLES else None


def _in_channels(thumb: tuple, channels: int, wanted: int) -> tuple:
    """A thumbnail of `channels` channels as one of `wanted` channels: a colour picture in
    grey is its luma (the weights a JPEG decoder uses); () where it cannot be told."""
    if channels == wanted:
        return thumb
    if channels == 3 and wanted == 1:
        return tuple(0.299 * r + 0.587 * g + 0.114 * b for r, g, b in zip(thumb[0::3], thumb[1::3], thumb[2::3]))
    return ()


def pair(element) -> tuple[Part, Part, bool] | None:
    """(picture, label, swapped) of a two-part element; a pair written (label, picture) is
    read the right way round, and said to be swapped. None if it is no pair."""
    if len(element) != 2:
        return None
    first, second = element
    if first.is_string and first.rank == 0 and not is_path(first.text) and second.is_number and second.rank == 3:
        return second, first, True
    return first, second, False


# --- what an image or a label should have been --------------------------------------


def image_mismatch(image: Part, pictures: dict[str, Picture], image_dtype: str = "uint8") -> str:
    """Why a sampled image that is none of the data's pictures is not one."""
    problem = image_form_problem(image, image_dtype)
    if problem:
        return problem
    like = resembles(image, pictures)
    if like is not None and like.shape[:2] != tuple(image.shape[:2]):
        return (f"a picture of {image.shape[0]}x{image.shape[1]} is {like.source}, which is {like.shape[0]}x{like.shape[1]}: "
                "decode each file as it is, without resizing or cropping it (the photos have different sizes)")
    decoded = [p for p in pictures.values() if len(p.shape) == 3]
    channels = image.shape[-1]
    if channels != 3 and not any(p.shape[-1] == channels for p in decoded):
        grey = " (grey)" if channels == 1 else ""
        return (f"the pictures were decoded with {channels} channel(s){grey}: decode them in colour, with 3 channels "
                "(tf.io.decode_jpeg(bits), or channels=3)")
    sizes = sorted({p.shape[:2] for p in decoded})
    if tuple(image.shape[:2]) not in sizes:
        known = ", ".join(f"{h}x{w}" for h, w in sizes[:3]) + (", ..." if len(sizes) > 3 else "")
        return (f"a picture of {image.shape[0]}x{image.shape[1]} is none of the data's pictures ({known}): "
                "decode the file as it is, without resizing or cropping it")
    return ("its pixels are those of none of the data's pictures decoded by tf.io.decode_jpeg: decode the file's "
            "bytes as they are, with nothing changed")


def label_mismatch(label: Part, said: str | None, picture: Picture | None, classes) -> str:
    """Why a label is not its picture's class (`said`: the class it names, if any)."""
    expected = classes[picture.label] if picture is not None else None
    where = f" ({picture.source} is a picture of {expected})" if picture is not None else ""
    text = label.text or str(label)
    if said is not None:
        return (f"a picture is labelled {said!r}, the class of another picture{where}: take the picture and its label "
                "from the same file name, in the function you map (two datasets listed separately are shuffled differently)")
    file_name = picture is not None and text == os.path.basename(picture.source)
    if label.is_string and "/" not in text and (file_name or text.lower().endswith(IMAGE_FILES)):
        return (f"the labels are file names ({text!r}), not class names{where}: take the name of the folder that "
                "holds the file, the part of the path before the file's name")
    if label.is_string and "/" in text:
        return f"the labels are whole paths ({text!r}){where}: keep only the folder's name, the part before the file's name"
    return f"the label {text!r} is none of the classes ({', '.join(classes)}){where}"


def rows(sample: Sample, pictures: dict[str, Picture], classes) -> list[dict]:
    """The sample as the scorecard shows it: each element, and which picture its image is."""
    shown = []
    for element in sample.elements:
        found = pair(element)
        image = found[0] if found else (element[0] if element else None)
        picture = picture_of(image, pictures) if image is not None else None
        like = resembles(image, pictures) if image is not None and picture is None else None
        if picture is not None:
            said = f"{picture.source} ({classes[picture.label]})"
        elif like is not None:
            said = f"made from {like.source} ({classes[like.label]}), changed after decoding"
        else:
            said = "none of the data's pictures"
        shown.append({"element": describe(element), "picture": said})
    return shown
