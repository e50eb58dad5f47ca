"""Where models come from: local folders (and the upload lake), with their model cards."""

from heritage.sources.cards import CARD_SIZE_LIMIT, ModelCard, parse_card, read_card
from heritage.sources.lake import (
    DEFAULT_MAX_BYTES,
    Upload,
    UploadError,
    add_to_lake,
    check_name,
    parse_size,
)
from heritage.sources.local import (
    Discovery,
    DiscoveryError,
    FoundModel,
    Skipped,
    check_roots,
    classify_folder,
    discover,
    is_weight_file,
)

__all__ = [
    "CARD_SIZE_LIMIT",
    "DEFAULT_MAX_BYTES",
    "Upload",
    "UploadError",
    "add_to_lake",
    "check_name",
    "parse_size",
    "Discovery",
    "DiscoveryError",
    "FoundModel",
    "ModelCard",
    "Skipped",
    "check_roots",
    "classify_folder",
    "discover",
    "is_weight_file",
    "parse_card",
    "read_card",
]
