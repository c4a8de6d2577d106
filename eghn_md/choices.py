"""The lists of choices a user picks from, one home each and torch-free (the command line imports this module to
build its ``--help`` without loading torch). The modules that act on a choice re-export its list and check it."""

from __future__ import annotations

__all__ = ["MODEL_NAMES", "PRESET_NAMES", "SCHEDULES", "OPTIMIZERS", "DEVICES", "FEATURE_SETS", "SPLITS",
           "EVAL_SPLITS", "NODE_LEVELS", "PREDICTORS"]

#: every model the registry can build (:mod:`eghn_md.models.registry`)
MODEL_NAMES = ("eghn", "eghn-published", "egnn", "gnn", "rf", "linear")
#: the training presets (:data:`eghn_md.train.config.PRESETS`)
PRESET_NAMES = ("tiny", "default", "paper", "paper-eghn", "generative")
#: learning-rate schedules (:class:`eghn_md.train.options.TrainConfig`)
SCHEDULES = ("cosine", "plateau", "none")
#: ``adamw``: decoupled weight decay (the default); ``adam``: torch's Adam, weight decay added to the gradient as an
#: L2 penalty (the published EGHN code's optimiser)
OPTIMIZERS = ("adamw", "adam")
#: where to run (:func:`eghn_md.utils.resolve_device`)
DEVICES = ("auto", "cpu", "cuda")
#: input feature sets of ``train --features`` (:func:`eghn_md.graph.features.feature_spec_for`)
FEATURE_SETS = ("residue", "paper", "both", "sequence")
#: the time blocks of every trajectory a run is trained, validated and tested on (:mod:`eghn_md.train.sources`)
SPLITS = ("train", "val", "test")
#: what an evaluation may run on: one of the splits, or ``all`` windows
EVAL_SPLITS = (*SPLITS, "all")
#: what a dataset's node is: one residue (its Cα) or one selected atom (:mod:`eghn_md.graph.nodes`)
NODE_LEVELS = ("residue", "atom")
#: the predictors every evaluation reports, in table and CSV column order: the model, the static x_t and the
#: constant velocity x_t + (x_t − x_{t−ΔT})
PREDICTORS = ("model", "static", "const_velocity")
