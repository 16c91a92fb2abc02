"""Training and inference machinery of the deep-learning fusion methods (needs torch and MONAI).

This package is imported only by the learned methods, the ``medfusion train`` command and the tests, so
``import MedFusionLib`` and the classical methods never load torch. Its layers:

``blocks``, ``networks``
    The networks of the learned methods, built from MONAI blocks (``Convolution``, ``DenseBlock``) with a
    ``spatial_dims`` argument, so 3-D versions are a constructor argument away.
``data``
    Training data: folders of registered pairs (2-D images laid out like ``aanlib-dev``, or volume pairs,
    NRRD / NIfTI / MetaImage / ``.npy``, from which slices or 3-D patches are drawn), scikit-image's bundled
    natural images and the synthetic head phantom; random patches, normalised exactly as at inference.
``augment``
    Configurable MONAI augmentation (rotation, flips, zoom, intensity scale and shift, noise).
``losses``
    Reusable loss pieces: SSIM (MONAI), intensity, gradient, perceptual (on the feature network trained
    here), the adaptive weights of FusionDN and U2Fusion (PMGI's proportional loss is
    written in its recipe, ``recipes/unified.py``).
``ewc``
    Elastic weight consolidation for sequential multi-task training.
``trainer``
    A step-based training loop: phases (tasks) with their own optimisers, tqdm progress, CSV loss log,
    seed, checkpoint and resume; a phase's step function may drive several models and optimisers
    (room for adversarial training).
``weights``
    Saving and loading shipped weights (state dict + architecture + metadata), device selection, and
    the :class:`MedFusionLib.errors.WeightsError` that names the command reproducing missing weights.
``recipes``
    One training recipe per learned method (what ``medfusion train METHOD`` runs).
"""
