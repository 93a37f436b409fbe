"""What an assignment is: its manifest, resolved once into the run's context, its release, its lab
module, and the notebooks made from it (scenarios, populations, `grader new`)."""
