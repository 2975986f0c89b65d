# The project image: the pinned project on Python 3.11. The "Cluster" issue moves it onto the
# official rayproject/ray image of the pinned Ray version.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY solvers ./solvers
COPY sweeps ./sweeps
COPY tracking ./tracking
RUN pip install --no-cache-dir . && useradd --create-home metasweep
USER metasweep
ENTRYPOINT ["metasweep"]
CMD ["--help"]
