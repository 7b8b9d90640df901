"""Record -> model-ready example, the work done in grain worker processes.

`ExampleBuilder` decodes and resizes the record's video or image, lays out
its patches (uint8, normalised later in the batch so less crosses the process
boundary), and encodes the chat with `<|video_pad|>` or `<|image_pad|>`
expanded. An image is patched as the HF image processor does (one frame
repeated to fill the temporal patch: grid_t 1). A file that cannot be used or
a conversation longer than `max_length` yields a `Skipped` instead, which the
batching stage counts. A file that failed once is remembered (per process)
and skipped in later epochs without being read again.
"""

from __future__ import annotations

import dataclasses

from vtjax.data import chat, image, sampling, video, vision
from vtjax.data import tokenizer as tok_lib
from vtjax.data import records
from vtjax.data.records import Record

MODES = ("sft", "grpo", "eval")


@dataclasses.dataclass(frozen=True)
class VideoOptions:
    """How each video is sampled and sized; the defaults are Video-R1's vendored qwen-vl-utils.

    2 fps, 4..16 frames (floored to even), frames at <= int(1.05 * 128*28*28)
    pixels: a 5 s clip gives 10 frames, a 480x640 frame becomes 280x364.
    """

    nframes: int | None = None  # exact frame count (rounded to even); None samples at `fps`
    fps: float = sampling.FPS  # frames per second when nframes is None
    min_frames: int = sampling.FPS_MIN_FRAMES  # fps mode lower bound
    max_frames: int = sampling.VIDEO_R1_MAX_FRAMES  # fps mode upper bound (upstream qwen-vl-utils: 768)
    min_pixels: int = sampling.VIDEO_R1_MIN_PIXELS  # per-frame pixel floor
    max_pixels: int | None = sampling.VIDEO_R1_MAX_PIXELS  # qwen-vl-utils' VIDEO_MAX_PIXELS (floor: 1.05*min)
    total_pixels: int = sampling.VIDEO_TOTAL_PIXELS  # whole-video budget
    backend: str | None = None  # "pyav" | "decord"; None: PyAV (bounded memory on large frames)
    threads: int = 1  # decoder threads per worker

    @classmethod
    def from_config(cls, data) -> VideoOptions:
        """From a config's `data` section: nframes (0 = fps mode), fps, min/max_frames, min/max_pixels."""
        return cls(nframes=int(data.nframes) or None, fps=float(data.fps), min_frames=int(data.min_frames),
                   max_frames=int(data.max_frames), min_pixels=int(data.min_pixels),
                   max_pixels=int(data.max_pixels))


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """How each image record is sized; the defaults are Video-R1's vendored qwen-vl-utils (`fetch_image`)."""

    min_pixels: int = image.VIDEO_R1_IMAGE_MIN_PIXELS  # area floor (4*28*28)
    max_pixels: int = image.VIDEO_R1_IMAGE_MAX_PIXELS  # area ceiling (256*28*28; upstream 16384*28*28)

    @classmethod
    def from_config(cls, data) -> ImageOptions:
        """From a config's `data` section: image_min_pixels, image_max_pixels."""
        return cls(min_pixels=int(data.image_min_pixels), max_pixels=int(data.image_max_pixels))


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An example dropped in a worker: which record, which file, why."""

    record_id: str
    path: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ExampleBuilder:
    """Picklable map function: Record -> example dict, or Skipped."""

    tokenizer: tok_lib.Tokenizer
    prompts: chat.Prompts
    mode: str  # "sft" (prompt + target, loss mask), "grpo" / "eval" (prompt only)
    video: VideoOptions = VideoOptions()
    max_length: int = 8192  # longer conversations are skipped, never truncated
    include_prompt_in_loss: bool = False  # SFT: also train on prompt text tokens
    image: ImageOptions = ImageOptions()  # sizing of data_type "image" records
    # file path -> why it cannot be used; filled as videos / images fail, one copy per worker process
    bad_files: dict[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is not one of {MODES}.")

    def __call__(self, record: Record) -> dict | Skipped:
        path = record.video_path
        if path in self.bad_files:
            return Skipped(record.uid, path, self.bad_files[path])
        try:
            patches, grid, seconds = self._patches(record)  # uint8 [N, 1176], int64 [3], float
        except (video.VideoError, image.ImageError) as e:
            self.bad_files[path] = e.reason
            return Skipped(record.uid, path, e.reason)
        is_image = record.data_type == records.DataType.IMAGE
        user_text = self.prompts.user_text(record.problem, record.options, record.problem_type,
                                           record.video_summary)
        encoded = chat.encode_chat(
            self.tokenizer,
            system=self.prompts.system,
            user_text=user_text,
            vision_tokens=vision.num_vision_tokens(grid),
            vision_kind=record.data_type,
            answer=record.sft_target if self.mode == "sft" else None,
            include_prompt_in_loss=self.include_prompt_in_loss,
        )
        n = encoded.input_ids.shape[0]
        if n > self.max_length:
            return Skipped(
                record.uid, record.video_path,
                f"{n} tokens > max_length {self.max_length}; raise max_length or use fewer pixels",
            )
        example = {
            "input_ids": encoded.input_ids,  # int32 [L]
            "patches": patches,  # uint8 [N, 1176]
            "grid_thw": grid,  # int64 [3]
            "second_per_grid_t": seconds,  # 0.0 for an image (its positions have no time step)
            "is_image": is_image,
            "record_id": record.uid,
            "solution": record.solution,
            "problem_type": record.problem_type,
            "answer": record.answer,
        }
        if self.mode == "sft":
            example["loss_mask"] = encoded.loss_mask  # bool [L]
        return example

    def _patches(self, record: Record) -> tuple:
        """(uint8 patch rows [N, 1176], grid_thw int64 [3], seconds per temporal patch) of the record's file."""
        if record.data_type == records.DataType.IMAGE:
            pixels = image.load_image(record.video_path, min_pixels=self.image.min_pixels,
                                      max_pixels=self.image.max_pixels)  # uint8 [H, W, 3]
            patches, grid = vision.patchify_video_raw(pixels[None])  # one frame, repeated: grid_t 1
            return patches, grid, 0.0
        v = self.video
        frames, fps = video.load_video(
            record.video_path, nframes=v.nframes, fps=v.fps, min_frames=v.min_frames,
            max_frames=v.max_frames, min_pixels=v.min_pixels, max_pixels=v.max_pixels,
            total_pixels=v.total_pixels, backend=v.backend, threads=v.threads,
        )
        patches, grid = vision.patchify_video_raw(frames)
        return patches, grid, vision.second_per_grid_t(fps)
