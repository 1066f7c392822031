def execute(:
