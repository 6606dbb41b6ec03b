"""``python -m fcn_deploy.cli``: the same as the ``fcn-deploy`` command."""

from fcn_deploy.cli import main

main()
