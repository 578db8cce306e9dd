"""Clean the notebooks in nbs/: `nbdev_clean`, then the top-level metadata JupyterLab itself writes.

    python tools/clean_nbs.py        (`make export` runs it; `make test` checks it changes nothing)

JupyterLab marks a notebook modified the moment it opens unless the notebook's metadata already
equals what its kernel reports: the kernelspec (display name included) and the kernel's
`language_info` (Python version included). nbdev_clean 2.4.14 always sets the display name to the
kernel's name, `python3`, and keeps `language_info` (settings.ini allows it). So the notebooks record
display name `python3`, and `make install` registers the project's `python3` kernel under that display
name (`ipykernel install --sys-prefix --display-name python3`): plain `nbdev_clean` and JupyterLab then
agree. This step adds `language_info` for the project's Python (PYTHON_VERSION) to a notebook that lacks
it or records another. On another Python a notebook still opens marked modified, by the version alone.
"""
from pathlib import Path

from execnb.nbio import read_nb, write_nb
from fastcore.xtras import globtastic
from nbdev.clean import nbdev_clean

NBS = Path(__file__).resolve().parent.parent / 'nbs'
PYTHON_VERSION = '3.11.7'  # the Python the project is developed and tested on
METADATA = {
    'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'},   # as nbdev_clean writes it
    'language_info': {'codemirror_mode': {'name': 'ipython', 'version': 3}, 'file_extension': '.py',
                      'mimetype': 'text/x-python', 'name': 'python', 'nbconvert_exporter': 'python',
                      'pygments_lexer': 'ipython3', 'version': PYTHON_VERSION},
}


def clean(folder=NBS):
    nbdev_clean.__wrapped__(str(folder))  # nbdev's own clean, with settings.ini's options
    for path in globtastic(folder, file_glob='*.ipynb', skip_folder_re='^[_.]'):
        nb = read_nb(path)
        nb.metadata.update(METADATA)
        write_nb(nb, path)  # writes only when something changed


if __name__ == '__main__': clean()
