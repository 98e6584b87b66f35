"""How one phase trains: its section of params.yaml, typed, with what the stage works out."""

from __future__ import annotations

from dataclasses import dataclass

from src.finetune.params import (
    AugmentParams,
    Params,
    Phase,
    Phase1Params,
    Phase2Params,
    TrainParams,
)


@dataclass(frozen=True)
class Plan:
    """A phase's settings (``phase1`` or ``phase2`` of params.yaml), the augmentation and the
    ``train`` switches, and the epoch it starts from (phase 2 continues phase 1's count)."""

    phase: Phase
    settings: Phase1Params | Phase2Params
    augment: AugmentParams
    train: TrainParams
    seed: int
    initial_epoch: int = 0
    jit_compile: bool = False  # as resolved for the devices (see ``devices``)
    # Base layers the phase trains, counted from the top (``phase2.unfreeze_last`` in layers
    # of the backbone); None: the head alone (phase 1).
    unfreeze_last: int | None = None

    @classmethod
    def for_phase(
        cls, params: Params, phase: Phase, *, initial_epoch: int = 0, jit_compile: bool = False
    ) -> Plan:
        return cls(
            phase=phase,
            settings=params.phase(phase),
            augment=params.augment,
            train=params.train,
            seed=params.seed,
            initial_epoch=initial_epoch,
            jit_compile=jit_compile,
            unfreeze_last=params.unfrozen_layers() if phase is Phase.FINETUNE else None,
        )

    @property
    def end_epoch(self) -> int:
        return self.initial_epoch + self.settings.epochs

    @property
    def train_batchnorm(self) -> bool:
        """Whether BatchNormalization in the unfrozen layers trains (phase 2 only)."""
        return isinstance(self.settings, Phase2Params) and self.settings.train_batchnorm

    @property
    def lr_decay(self) -> float:
        return self.settings.lr_decay if isinstance(self.settings, Phase2Params) else 1.0

    @property
    def unfreeze_every(self) -> int:
        return self.settings.unfreeze_every if isinstance(self.settings, Phase2Params) else 0

    @property
    def cache(self) -> bool:
        """Whether the phase may train on the frozen part's cached outputs."""
        return self.settings.cache_features if isinstance(self.settings, Phase1Params) else True
