"""Deploy step 3: the migrations checked offline and against each environment."""
