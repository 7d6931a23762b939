-- One database per service on the shared PostgreSQL (names match orchard.production.DATABASES).
CREATE DATABASE orchard_mlflow;
CREATE DATABASE orchard_mlflow_auth;
CREATE DATABASE orchard_prefect;
CREATE DATABASE orchard_feast;
CREATE DATABASE orchard_governance;
