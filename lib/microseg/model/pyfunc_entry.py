"""Models-from-code entry that MLflow runs when it loads the logged encoder."""

import mlflow

from microseg.model.pyfunc import EncoderModel

mlflow.models.set_model(EncoderModel())
