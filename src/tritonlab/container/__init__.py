"""Docker, through docker-py: the engine connection (with errors that say what to do), the containers tritonlab
labels as its own, the reaper that removes a container when its owner dies, and the offline CPU image build."""
