"""Training recipes: what ``medfusion train METHOD`` runs for each learned method.

One module per family, every recipe registered in the one :data:`RECIPES` registry of :mod:`.base`:

``autoencoder``
    the feature network of the perceptual losses, DSCNN's stacked autoencoder;
``weight_map``
    the Siamese networks of the CNN weight map and of ``nsst_similarity``;
``unified``
    IFCNN, PMGI, FusionDN, U2Fusion;
``adversarial``
    the GANs (FusionGAN, DDcGAN, MGMDcGAN, tissue-aware cGAN): trainer phases with one optimiser per
    network;
``encoder_decoder``
    the U-Net and MCFNet encoder-decoders.

The default configuration of each recipe is the one that produced the shipped weights (docs/models.md
lists them with their wall time and evaluation).
"""

from .base import RECIPES, Build, DataContext, RecipeInfo, TrainConfig, recipe, recipe_options, train  # noqa: F401
from . import autoencoder, weight_map, unified  # noqa: F401,E402  (register their recipes)
from . import adversarial, encoder_decoder  # noqa: F401,E402

__all__ = ["RECIPES", "Build", "DataContext", "RecipeInfo", "TrainConfig", "recipe", "recipe_options", "train"]
