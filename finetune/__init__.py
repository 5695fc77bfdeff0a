"""Persona training: datasets in, LoRA adapter folders (with their persona.json) out.

Renders conversations with the runtime's own chat template (llm.templates), so a persona is trained on
exactly the prompt it is served with. Heavy libraries load only when training starts.
"""

from rolechat.finetune.config import TrainConfig
from rolechat.finetune.data import Conversation, DataError, Dataset, Issue, load_dataset
from rolechat.finetune.encode import EncodeStats, Example, encode_conversations, show_example
from rolechat.finetune.merge import MergeError, merge_persona
from rolechat.finetune.model import TrainError
from rolechat.finetune.progress import ProgressLog, plot_loss, read_progress
from rolechat.finetune.trainer import Prepared, TrainResult, prepare, progress_path, run_dir, train

__all__ = [
    "Conversation",
    "DataError",
    "Dataset",
    "EncodeStats",
    "Example",
    "Issue",
    "MergeError",
    "Prepared",
    "ProgressLog",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "encode_conversations",
    "load_dataset",
    "merge_persona",
    "plot_loss",
    "prepare",
    "progress_path",
    "read_progress",
    "run_dir",
    "show_example",
    "train",
]
