-- One database per service on the shared PostgreSQL (names match orchard.production.DATABASES, plus the decision
-- log's own database), and one login role per service with only what it needs (docs/roles.md).
-- No password is set here: set each role's password from your secret store (ALTER ROLE ... PASSWORD) before use.
-- Every name starts with orchard_ (the services tests load this file with another prefix).

CREATE ROLE orchard_owner LOGIN;      -- owns the governance and decision tables; schema changes only, no service
CREATE ROLE orchard_mlflow LOGIN;     -- the MLflow server: its tracking and user (basic-auth) databases
CREATE ROLE orchard_prefect LOGIN;    -- the Prefect server: its database
CREATE ROLE orchard_feast LOGIN;      -- the Feast SQL registry
CREATE ROLE orchard_pipeline LOGIN;   -- Prefect worker and Dask workers: append governance records, read decisions
CREATE ROLE orchard_api LOGIN;        -- the decision API: read governance records, append decisions

CREATE DATABASE orchard_mlflow OWNER orchard_mlflow;
CREATE DATABASE orchard_mlflow_auth OWNER orchard_mlflow;
CREATE DATABASE orchard_prefect OWNER orchard_prefect;
CREATE DATABASE orchard_feast OWNER orchard_feast;
CREATE DATABASE orchard_governance OWNER orchard_owner;
CREATE DATABASE orchard_decisions OWNER orchard_owner;

-- Nobody connects to a database that is not theirs.
REVOKE ALL ON DATABASE orchard_mlflow, orchard_mlflow_auth, orchard_prefect, orchard_feast, orchard_governance,
  orchard_decisions FROM PUBLIC;
GRANT CONNECT ON DATABASE orchard_mlflow, orchard_mlflow_auth TO orchard_mlflow;
GRANT CONNECT ON DATABASE orchard_prefect TO orchard_prefect;
GRANT CONNECT ON DATABASE orchard_feast TO orchard_feast, orchard_pipeline;
GRANT CONNECT ON DATABASE orchard_governance TO orchard_owner, orchard_pipeline, orchard_api;
GRANT CONNECT ON DATABASE orchard_decisions TO orchard_owner, orchard_pipeline, orchard_api;

-- Governance records: the pipeline appends (SELECT, INSERT), the API reads; nobody but the owner may update,
-- delete, truncate or touch triggers, and only the owner can create the tables (Orchard creates them when it
-- first runs as orchard_owner). Default privileges give the grants to the tables the owner creates.
\connect orchard_governance
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO orchard_pipeline, orchard_api;
GRANT CREATE ON SCHEMA public TO orchard_owner;
ALTER DEFAULT PRIVILEGES FOR ROLE orchard_owner IN SCHEMA public GRANT SELECT, INSERT ON TABLES TO orchard_pipeline;
ALTER DEFAULT PRIVILEGES FOR ROLE orchard_owner IN SCHEMA public GRANT USAGE ON SEQUENCES TO orchard_pipeline;
ALTER DEFAULT PRIVILEGES FOR ROLE orchard_owner IN SCHEMA public GRANT SELECT ON TABLES TO orchard_api;

-- Decision log: the API appends, the pipeline reads (monitoring of live traffic).
\connect orchard_decisions
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO orchard_pipeline, orchard_api;
GRANT CREATE ON SCHEMA public TO orchard_owner;
ALTER DEFAULT PRIVILEGES FOR ROLE orchard_owner IN SCHEMA public GRANT SELECT, INSERT ON TABLES TO orchard_api;
ALTER DEFAULT PRIVILEGES FOR ROLE orchard_owner IN SCHEMA public GRANT SELECT ON TABLES TO orchard_pipeline;
