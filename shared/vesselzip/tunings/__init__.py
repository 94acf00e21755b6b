"""Tunings: per volume, the strongest setting of one codec mode whose segmentation
stays within a Dice budget (bisection), then the one setting that keeps a share of
the dataset's volumes within it.

* axis: the candidate values of a codec mode, mildest first.
* stored: the stored tuning (TuningSpec) and the job of each volume and value.
* search: where the search stands, replayed from its jobs' outcomes."""

from vesselzip.tunings.axis import TUNABLE_MODES, SearchAxis, TuningSpecError, search_axis
from vesselzip.tunings.search import (
    Confirmation,
    DatasetAnswer,
    Evaluation,
    Probe,
    VolumeSearch,
    evaluate,
)
from vesselzip.tunings.stored import (
    Score,
    TunedVolume,
    TuningSpec,
    default_tuning_key,
    list_tunings,
    load_tuning,
    save_tuning,
    tuning_id_for,
    tuning_key,
)

__all__ = [
    "TUNABLE_MODES",
    "Confirmation",
    "DatasetAnswer",
    "Evaluation",
    "Probe",
    "Score",
    "SearchAxis",
    "TunedVolume",
    "TuningSpec",
    "TuningSpecError",
    "VolumeSearch",
    "default_tuning_key",
    "evaluate",
    "list_tunings",
    "load_tuning",
    "save_tuning",
    "search_axis",
    "tuning_id_for",
    "tuning_key",
]
