"""Packaging for maskcls: every field comes from settings.ini (nbdev 2 layout)."""
import shlex
from configparser import ConfigParser

import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

for key in ('version', 'description', 'keywords', 'author', 'author_email', 'min_python', 'lib_name'):
    assert key in cfg, f'settings.ini lacks `{key}`'

licenses = {'apache2': 'Apache-2.0'}   # SPDX expressions (setuptools deprecates license classifiers)
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()
min_python = cfg['min_python']

requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
ray_requirements = shlex.split(cfg.get('ray_requirements', ''))   # optional: Ray Tune for the HPO lesson
hpo_requirements = shlex.split(cfg.get('hpo_requirements', ''))   # optional: PostgreSQL/MySQL drivers for shared studies
scripts = [s for s in cfg.get('console_scripts', '').split() if s]

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    license=licenses.get(cfg.get('license', 'apache2')),
    classifiers=[
        'Development Status :: ' + statuses[int(cfg['status'])],
        'Intended Audience :: ' + cfg['audience'].title(),
        'Natural Language :: ' + cfg['language'].title(),
    ] + [f'Programming Language :: Python :: {v}' for v in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['maskcls', 'maskcls.*']),
    include_package_data=True,
    package_data={'maskcls': ['weights/*.pth', 'weights/*.json']},   # the tiny model's pretrained start
    install_requires=requirements,
    extras_require={'dev': dev_requirements + hpo_requirements, 'ray': ray_requirements, 'hpo': hpo_requirements},
    python_requires='>=' + min_python,
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    author=cfg['author'],
    author_email=cfg['author_email'],
    description=cfg['description'],
    keywords=cfg['keywords'],
)
