def main(argv=None):
    print("vramplan: under construction")
    return 0
