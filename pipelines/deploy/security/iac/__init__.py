"""Checkov over the Pulumi program: each stack built under Pulumi's mocks, written as the
Terraform plan it corresponds to, and checked with `checkov --framework terraform_plan`."""
