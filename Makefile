.PHONY: demo test setup services-up services-down retrain

demo:  ## set up the base install (no TensorFlow, no torch) and run the local demo
	bash scripts/demo.sh

test:  ## set up everything, start the services, run the whole test suite
	bash scripts/test.sh

setup:  ## everything: test tooling and the gru and transformer training extras
	bash scripts/bootstrap.sh dev,gru,transformer

services-up: setup
	.venv/bin/badbuzz services up

services-down:
	.venv/bin/badbuzz services down

retrain:  ## retrain from feedback when the trigger policy says so (schedule it: docs/models.md, "Model lifecycle")
	.venv/bin/badbuzz retrain --if-needed
