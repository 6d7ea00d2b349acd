"""The typed tree of a device profile: one hardware target a cart runs on.

Moving from the emulator to a real board must be a profile change and nothing else, so every
knob that differs between targets lives here and nowhere else: the memory budget, the inference
runtime and backbone, the camera, the microcontroller's serial port, the scale calibration and
how long review crops are kept.

Every model forbids unknown keys (a misspelt key would otherwise be silently ignored and its
default used on a real cart) and is frozen (a profile is read once at start-up; code that wants a
different value must load a different profile). Values are strict: TOML has real types, so
``threads = "4"`` is a mistake worth reporting, not something to coerce. Every field says why it
exists; ``cartos profile schema`` prints the JSON schema built from these descriptions and
``device_profiles/README.md`` carries the same table.

Relative paths (``inference.model``, ``camera.path``) are resolved against the directory of the
profile file when the loader passes it in the validation context, so a profile means the same
thing whatever the current directory is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Validation-context keys the loader sets; without them (a profile built in code) relative paths
# stay relative and the name is not compared with any file.
PROFILE_DIR_CONTEXT = "profile_dir"
FILE_STEM_CONTEXT = "file_stem"

Backend = Literal["onnxruntime", "litert"]
Variant = Literal["lite0", "lite1", "lite2"]
CameraSource = Literal["device", "file", "rtsp", "replay"]

# File suffix each runtime loads; a profile pairing a backend with the other runtime's model file
# would only fail when the cart starts.
MODEL_SUFFIX: dict[str, str] = {"onnxruntime": ".onnx", "litert": ".tflite"}

# The load-cell ADC (HX711) delivers signed 24-bit samples and reports saturation as the extreme
# codes, so a calibration point must lie strictly inside that range.
ADC_MIN_COUNTS = -(2**23)
ADC_MAX_COUNTS = 2**23 - 1

PROFILE_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
EMULATOR_PORT = "emulator"


def _resolve_against_profile_dir(value: Path, info: ValidationInfo) -> Path:
    """Anchor a relative path at the profile file's directory when the loader says where it is."""
    value = value.expanduser()
    context = info.context
    if value.is_absolute() or not isinstance(context, Mapping):
        return value
    base = context.get(PROFILE_DIR_CONTEXT)
    return (Path(base) / value).resolve() if base is not None else value


ProfilePath = Annotated[Path, AfterValidator(_resolve_against_profile_dir)]


class ProfileSection(BaseModel):
    """Shared configuration of every profile model: unknown keys rejected, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class MemoryConfig(ProfileSection):
    """How much RAM cartos may use on the device, checked against a measured footprint."""

    budget_mib: int = Field(
        gt=0,
        description=(
            "RAM (MiB) cartos may use on this device, after the OS, the camera stack and other "
            "services; `cartos profile check` compares the measured footprint with it."
        ),
    )
    headroom: float = Field(
        default=0.20,
        ge=0.0,
        lt=1.0,
        description=(
            "Fraction of the budget that must stay free after the measured footprint, for "
            "allocator fragmentation, catalogue growth between checks and measurement error."
        ),
    )

    @property
    def usable_mib(self) -> float:
        """The share of the budget the measured footprint may fill."""
        return self.budget_mib * (1.0 - self.headroom)


class InferenceConfig(ProfileSection):
    """Which runtime runs which backbone, and how hard it may use the CPU."""

    backend: Backend = Field(
        description=(
            "Inference runtime: ONNX Runtime on x86 and Jetson, LiteRT on ARM boards where its "
            "XNNPACK kernels are faster; must be installed on the device."
        ),
    )
    variant: Variant = Field(
        default="lite0",
        description=(
            "EfficientNet-Lite backbone size: lite0 is the shipped, measured default; larger "
            "variants cost memory and latency and must be built first (`cartos model build`)."
        ),
    )
    model: ProfilePath | None = Field(
        default=None,
        strict=False,
        description=(
            "Model file; unset means the packaged `efficientnet_<variant>_int8.<onnx|tflite>` "
            "next to the shipped model. Relative paths are relative to the profile file."
        ),
    )
    threads: int = Field(
        ge=1,
        le=256,
        description=(
            "Intra-op threads for the runtime: the number of cores cartos may keep busy, so the "
            "camera and the serial link keep a core of their own where the board allows it."
        ),
    )
    max_batch: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "Largest batch of crops embedded at once; the inference arena grows with it, so the "
            "footprint check warms the runtime up at this batch size."
        ),
    )
    spin_wait: bool = Field(
        default=False,
        description=(
            "Let idle inference threads busy-wait for the next run. Off on carts: the cores are "
            "shared with the camera, change detection and fusion, and spinning threads take "
            "them (measured on 2 cores: a 1280x1280 projection went from 1 ms to 13 ms right "
            "after an ONNX Runtime run). Turn on only where inference has cores to itself."
        ),
    )

    @model_validator(mode="after")
    def _model_matches_backend(self) -> InferenceConfig:
        expected = MODEL_SUFFIX[self.backend]
        if self.model is not None and self.model.suffix != expected:
            raise ValueError(
                f"backend {self.backend!r} loads {expected} files, but model is {self.model.name!r}"
            )
        return self


class CatalogueConfig(ProfileSection):
    """The largest catalogue the cart must hold in memory, which sizes the centroid table."""

    max_skus: int = Field(
        ge=1,
        description=(
            "Largest number of active SKUs the cart must recognise; every SKU keeps a prototype "
            "and its exemplars in RAM, so this dominates the footprint on small boards."
        ),
    )
    exemplars_per_sku: int = Field(
        default=8,
        ge=1,
        le=50,
        description=(
            "Upper bound of reference exemplars kept per SKU (enrolment accepts 1-50 images); "
            "bounding it bounds the exemplar memory."
        ),
    )
    families: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Expected number of product families (hierarchy fallback); unset assumes the worst "
            "case of one family per SKU when sizing the table."
        ),
    )
    brands: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Expected number of brands (hierarchy fallback); unset assumes the worst case of one "
            "brand per SKU when sizing the table."
        ),
    )

    @property
    def family_count(self) -> int:
        """Families to budget for: the estimate, or one per SKU when unknown."""
        return self.max_skus if self.families is None else self.families

    @property
    def brand_count(self) -> int:
        """Brands to budget for: the estimate, or one per SKU when unknown."""
        return self.max_skus if self.brands is None else self.brands


class CameraConfig(ProfileSection):
    """Where basket frames come from, at what size and rate, and how much history is kept."""

    source: CameraSource = Field(
        description=(
            "device: a V4L2/UVC camera by index; file: a video file; rtsp: a network camera; "
            "replay: recorded frames (a directory of images or a video at `path`, or frames "
            "pushed by the hardware-in-the-loop harness when `path` is unset)."
        ),
    )
    device: int | None = Field(
        default=None,
        ge=0,
        description="Camera index for source=device (OpenCV `VideoCapture(index)`, /dev/videoN).",
    )
    path: ProfilePath | None = Field(
        default=None,
        strict=False,
        description=(
            "Video file (source=file) or recording (source=replay); relative to the profile file."
        ),
    )
    url: str | None = Field(
        default=None,
        description="Stream URL for source=rtsp (rtsp:// or rtsps://).",
    )
    width: int = Field(
        ge=16,
        le=7680,
        description="Frame width (px) requested from the camera; sizes the frame ring.",
    )
    height: int = Field(
        ge=16,
        le=4320,
        description="Frame height (px) requested from the camera; sizes the frame ring.",
    )
    fps: float = Field(
        gt=0.0,
        le=240.0,
        description=(
            "Frames per second requested; enough to catch a hand entering and leaving the basket, "
            "and it sizes the frame ring."
        ),
    )
    ring_seconds: float = Field(
        gt=0.0,
        le=60.0,
        description=(
            "Seconds of frame history kept, so the frames before and after a settled weight change "
            "are still in memory when the scale reports it."
        ),
    )

    @model_validator(mode="after")
    def _source_has_its_address(self) -> CameraConfig:
        if self.source == "device" and self.device is None:
            raise ValueError("source 'device' needs `device` (the camera index)")
        if self.source == "file" and self.path is None:
            raise ValueError("source 'file' needs `path` (the video file)")
        if self.source == "rtsp":
            if self.url is None:
                raise ValueError("source 'rtsp' needs `url`")
            if not re.match(r"^rtsps?://", self.url):
                raise ValueError(f"url must start with rtsp:// or rtsps://, got {self.url!r}")
        return self

    @property
    def ring_frames(self) -> int:
        """Frames the ring holds: every frame of the last `ring_seconds`."""
        return max(1, round(self.ring_seconds * self.fps))

    @property
    def ring_bytes(self) -> int:
        """Bytes of BGR uint8 frames the ring holds when full."""
        return self.ring_frames * self.width * self.height * 3


class BridgeConfig(ProfileSection):
    """The serial link to the cart's microcontroller (scale, scanner, lights)."""

    port: str = Field(
        description=(
            "Serial device of the microcontroller, preferably a stable /dev/serial/by-id/... "
            "path, or the literal 'emulator' for the pty emulator the harness starts."
        ),
    )
    baud: int = Field(
        default=115200,
        gt=0,
        le=4_000_000,
        description=(
            "UART bit rate; must match the firmware (ignored by USB CDC ports, which run at USB "
            "speed whatever is set)."
        ),
    )
    clock_sync_interval_s: float = Field(
        default=10.0,
        gt=0.0,
        le=3600.0,
        description=(
            "How often the host re-measures the microcontroller clock offset, so weight events "
            "line up with camera frames despite crystal drift."
        ),
    )
    reconnect_max_backoff_s: float = Field(
        default=5.0,
        gt=0.0,
        le=300.0,
        description=(
            "Cap of the exponential reconnect backoff after the link drops (cable pulled, board "
            "reset); short enough that a replugged board is back within seconds."
        ),
    )

    @model_validator(mode="after")
    def _port_is_a_device_or_the_emulator(self) -> BridgeConfig:
        if self.port != EMULATOR_PORT and not self.port.startswith("/dev/"):
            raise ValueError(
                f"port must be a /dev/... serial device or {EMULATOR_PORT!r}, got {self.port!r}"
            )
        return self

    @property
    def is_emulated(self) -> bool:
        """True when the harness's pty emulator stands in for the board."""
        return self.port == EMULATOR_PORT


class ScaleConfig(ProfileSection):
    """Two-point load-cell calibration and the settle detector's parameters."""

    zero_counts: int = Field(
        gt=ADC_MIN_COUNTS,
        lt=ADC_MAX_COUNTS,
        description=(
            "Raw ADC counts with the empty basket on the cells (the zero point); strictly inside "
            "the signed 24-bit range, whose end codes mean saturation."
        ),
    )
    span_counts: int = Field(
        gt=ADC_MIN_COUNTS,
        lt=ADC_MAX_COUNTS,
        description="Raw ADC counts with the reference load in the basket (the span point).",
    )
    span_grams: float = Field(
        gt=0.0,
        description="The reference load (g) used for the span point.",
    )
    capacity_g: float = Field(
        gt=0.0,
        description=(
            "Load (g) above which the scale reports overload instead of a weight: the basket's "
            "rated load, well below the cells' limit."
        ),
    )
    settle_tolerance_g: float = Field(
        gt=0.0,
        description=(
            "Largest spread (g) of the signal over the settle window that still counts as "
            "settled; above the ADC noise, below the lightest item that must be seen."
        ),
    )
    settle_window_ms: int = Field(
        gt=0,
        le=10_000,
        description=(
            "How long (ms) the weight must stay within tolerance to be settled: long enough to "
            "ride out the basket's oscillation, short enough for a prompt item event."
        ),
    )
    sample_rate_hz: float = Field(
        gt=0.0,
        le=1000.0,
        description="ADC sample rate (the HX711 runs at 10 or 80 Hz); the window needs 3+ samples.",
    )

    @model_validator(mode="after")
    def _calibration_is_usable(self) -> ScaleConfig:
        if self.span_counts == self.zero_counts:
            raise ValueError("span_counts equals zero_counts: the calibration has no slope")
        samples = self.settle_window_ms * self.sample_rate_hz / 1000.0
        if samples < 3:
            raise ValueError(
                f"settle_window_ms {self.settle_window_ms} holds only {samples:.1f} samples at "
                f"{self.sample_rate_hz:g} Hz; settling needs at least 3"
            )
        return self

    @property
    def grams_per_count(self) -> float:
        """Slope of the two-point calibration."""
        return self.span_grams / (self.span_counts - self.zero_counts)

    @property
    def span_mg(self) -> int:
        """The reference load in integer milligrams, as the firmware calibration takes it."""
        return round(self.span_grams * 1000)


class HilConfig(ProfileSection):
    """Hardware-in-the-loop settings, read only when the bridge runs against the emulator."""

    emulator_seed: int = Field(
        default=0,
        ge=0,
        description=(
            "Seed of the emulated load cell's noise and of the line-fault generator, so a failing "
            "scenario replays the same way."
        ),
    )
    emulator_noise_g: float = Field(
        default=0.4,
        ge=0.0,
        le=50.0,
        description=(
            "Standard deviation of the emulated load-cell noise in grams (an HX711 behind a cart "
            "basket shows about 0.3 to 0.5 g)."
        ),
    )


class PrivacyConfig(ProfileSection):
    """What of the camera's view may be stored, and for how long (it sees shoppers too)."""

    review_retention_hours: float = Field(
        default=72.0,
        ge=0.0,
        le=720.0,
        description=(
            "Hours a review crop or evidence file is kept on the cart before it is deleted: long "
            "enough for staff to review a weekend's unknown items, short enough that the disk "
            "holds no history; 0 deletes them at the next sweep (once a minute); at most 30 days."
        ),
    )
    max_crop_share: float = Field(
        default=0.6,
        gt=0.0,
        lt=1.0,
        description=(
            "Largest share of the frame area a stored item crop may cover; a larger changed "
            "region means the whole view changed (camera moved or covered), so nothing is "
            "stored rather than most of the frame."
        ),
    )


class SyncTlsConfig(ProfileSection):
    """The cart's client certificate for the broker's TLS listener (``cartos.sync.pki``)."""

    ca_certs: ProfilePath = Field(description="The store CA certificate (PEM).")
    certfile: ProfilePath = Field(
        description="This cart's client certificate (PEM); its CN is the cart id.")
    key_credential: str = Field(
        default="mqtt-client.key",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
        description=(
            "Name of the systemd credential holding the certificate's private key "
            "(`LoadCredential=`): a key never sits in a world-readable TOML file."
        ),
    )


class SyncConfig(ProfileSection):
    """The store hub link (``cartos.sync``): corrections up, signed catalogue releases down."""

    store: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                       description="The store id, as in the topics and the certificates.")
    cart: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                      description="This cart's id (its certificate CN with TLS).")
    host: str = Field(default="127.0.0.1", description="The store broker's host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (8883 with TLS).")
    root_key: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description=(
            "The pinned Ed25519 root public key (hex) that signs the hub's signing keys: "
            "the only thing a cart trusts for updates, whatever the network says."
        ),
    )
    keepalive_s: int = Field(default=5, ge=1, le=600,
                             description="MQTT keepalive; the last will fires after 1.5 × this.")
    tls: SyncTlsConfig | None = Field(default=None,
                                      description="Client-certificate TLS; none: plain.")


class DeviceProfile(ProfileSection):
    """One hardware target: everything that changes when cartos moves to another board."""

    name: str = Field(
        pattern=PROFILE_NAME_PATTERN,
        description="Profile name; must equal the file name without .toml, so logs name the file.",
    )
    description: str = Field(
        min_length=1,
        description="What this target is, in a sentence, for `cartos profile list`.",
    )
    arch: Literal["x86_64", "aarch64"] = Field(
        description=(
            "CPU architecture as `uname -m` reports it; informational, and a footprint measured "
            "on another architecture is reported as an estimate."
        ),
    )
    memory: MemoryConfig = Field(description="RAM budget and required headroom.")
    inference: InferenceConfig = Field(description="Inference runtime, backbone and threads.")
    catalogue: CatalogueConfig = Field(description="Catalogue size the cart must hold.")
    camera: CameraConfig = Field(description="Basket camera source and frame history.")
    bridge: BridgeConfig = Field(description="Serial link to the microcontroller.")
    scale: ScaleConfig = Field(description="Load-cell calibration and settle detection.")
    hil: HilConfig | None = Field(
        default=None,
        description="Hardware-in-the-loop settings; only meaningful with port = 'emulator'.",
    )
    privacy: PrivacyConfig = Field(
        default_factory=PrivacyConfig,
        description=(
            "Review-crop retention and the largest crop that may be stored; the defaults apply "
            "when the section is left out."
        ),
    )
    sync: SyncConfig | None = Field(
        default=None,
        description=(
            "The store hub link; usually set per site in /etc/cartos (store, cart id, broker). "
            "Left out: the cart runs alone and keeps everything in its outbox."
        ),
    )

    @field_validator("name")
    @classmethod
    def _name_matches_file(cls, name: str, info: ValidationInfo) -> str:
        context = info.context
        stem = context.get(FILE_STEM_CONTEXT) if isinstance(context, Mapping) else None
        if stem is not None and name != stem:
            raise ValueError(f"{name!r} does not match the file name (expected {stem!r})")
        return name
