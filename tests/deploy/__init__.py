"""Tests of the deployment: the Helm chart, the container images and the tools that check them."""
