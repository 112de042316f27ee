-- Database and role for cohortflow. The schema itself is created by
-- `python -m services.migrate` (run once per release, before the services).
CREATE ROLE cohortflow LOGIN PASSWORD 'change-me';
CREATE DATABASE cohortflow OWNER cohortflow;
