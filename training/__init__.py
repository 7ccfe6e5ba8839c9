"""Training, evaluation and the paper's experiments for AMAResNet, in five stages whose imports
run one way (each package imports only those before it; ``tests/test_layering.py`` checks):

* :mod:`training.data` -- real images in: readers, labelled layouts, public sources, slices,
  samples and splits (torch-free: the API decodes uploads with it);
* :mod:`training.simulate` -- artifacts in k-space, motion, realism augmentation, the foreign
  simulators (TorchIO, MONAI) and the simulated evaluation splits ``amaqc data build`` writes;
* :mod:`training.evaluate` -- metrics, scoring a checkpoint on a split, predicting on files,
  choosing the threshold again (calibration);
* :mod:`training.fit` -- the patch stream, the training loop, resumable state, weight averaging
  and the fused detector's logistic regression;
* :mod:`training.experiments` -- the paper's ablation and baselines, the fused-detector
  experiment, and the reports and model card made from them.

Scoring sits below fitting because the training loop validates through it (MONAI's cut, where
``metrics`` sits below ``engines``). Nothing here imports ``app`` or reads the environment.
"""
