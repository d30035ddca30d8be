"""Programs the tests run or import that are not tests: GitLab stand-ins and evaluators."""
