"""The model card (``README.md``) of a trained checkpoint names its base model.

TRL writes the card at every checkpoint save from ``model.config._name_or_path`` and drops it when that is a
local directory, which ours always are (an alias such as ``smollm2-135m`` resolves to a converted checkpoint
in the cache), so the card said "fine-tuned version of [None](https://huggingface.co/None)". We hand TRL's
card generator the base model instead: the hub id of an alias, the base of a checkpoint we trained ourselves
(followed through its ``train_summary.json``, so an RL model built on our SFT model names the original), else
the model as given. The card is also written once more beside the final model (TRL only writes it at
checkpoint saves), and its quick start loads the model from where it was saved unless it has a hub id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import SUMMARY_FILE


def base_model_name(model: str, _depth: int = 0) -> str:
    """What a card calls the base model of a run that trained ``model`` (see module doc)."""
    from ..io import DataError, read_json
    from ..models import ALIASES, cache_root

    if model in ALIASES:
        return ALIASES[model].hub_id
    path = Path(model)
    if not path.is_dir():
        return model  # a hub id (or a .gguf file: its name)
    summary = path / SUMMARY_FILE
    if summary.is_file() and _depth < 16:
        try:
            parent = read_json(summary).get("config", {}).get("model")
        except (DataError, AttributeError):
            parent = None
        if isinstance(parent, str) and parent:
            return base_model_name(parent, _depth + 1)
    for alias, spec in ALIASES.items():  # the converted checkpoint of an alias, passed by its cache path
        if path.resolve() == (cache_root() / "models" / alias).resolve():
            return spec.hub_id
    return str(model)


def install_model_card(trainer, model: str) -> None:
    """Make ``trainer`` (a TRL trainer) write cards that name the base model of ``model``."""
    base = base_model_name(model)

    def create_model_card(model_name: str | None = None, dataset_name: str | None = None,
                          tags: Any = None) -> None:
        write_model_card(trainer, base, model_name, dataset_name, tags)

    trainer.create_model_card = create_model_card  # TRL's checkpoint saves call this attribute


def write_model_card(trainer, base: str, model_name: str | None = None, dataset_name: str | None = None,
                     tags: Any = None) -> None:
    """TRL's card (its template, tags, trainer name and citation) with ``base`` as the base model."""
    if not trainer.is_world_process_zero():
        return
    from trl.trainer.utils import generate_model_card

    tags = {tags} if isinstance(tags, str) else set(tags or ())
    tags.update(getattr(trainer, "_tag_names", ()) or ())
    paper = getattr(trainer, "_paper", None) or {}
    out = Path(trainer.args.output_dir)
    card = generate_model_card(
        base_model=base, model_name=model_name or out.name,
        hub_model_id=getattr(trainer, "hub_model_id", None) or str(out.resolve()),  # the quick start loads it
        dataset_name=dataset_name, tags=sorted(tags), wandb_url=_wandb_url(), trackio_url=None, comet_url=None,
        trainer_name=getattr(trainer, "_name", "TRL"), trainer_citation=paper.get("citation"),
        template_file=getattr(trainer, "_template_file", None), paper_title=paper.get("title"),
        paper_id=paper.get("id"))
    out.mkdir(parents=True, exist_ok=True)
    card.save(str(out / "README.md"))


def _wandb_url() -> str | None:
    """The running Weights & Biases run's URL for the card's badge, as TRL adds it (None without wandb)."""
    try:
        import wandb
    except ImportError:
        return None
    run = getattr(wandb, "run", None)
    return getattr(run, "url", None) if run is not None else None
