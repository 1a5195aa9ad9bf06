-- A second database on the same server for Optuna's studies (MLflow uses "mlflow").
CREATE DATABASE optuna;
